"""`invoke bench.*`: measured speed, as ratios from one run."""

from invoke import Collection

collection = Collection("bench")
