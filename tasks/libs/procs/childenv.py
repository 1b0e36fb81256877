"""What every child command gets: this process's environment with the overrides on top. With
settings.process_environment, the only reads of os.environ in the product."""

import os


def child_environment(overrides=None) -> dict:
    return {**os.environ, **(overrides or {})}
