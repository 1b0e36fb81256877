"""The benchmarks' libraries (`invoke bench.*`, tasks/bench.py): scale.py (bench.scale), peers.py
(bench.peers, against Skaffold), inner.py and gosample.py (bench.inner's generated Go service, which
some tests build too)."""
