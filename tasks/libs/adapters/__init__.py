"""Thin adapters, one small class per tool, each handing argument lists to procs.Runner: engine.py
(podman and docker), kind.py (the Kind cluster), kubectl.py, localregistry.py (kind's local registry
container). Nothing else in kindling runs these tools."""
