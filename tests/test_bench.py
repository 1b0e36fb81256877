"""The benchmarks run end to end (scaled down) and print their ratios; figures are not asserted."""

import re

from conftest import invoke


def test_bench_build_prints_ratios(base_image, tmp_path):
    result = invoke(["bench.build", "--scale", "0.2"], {"KINDLING_LOCK_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"serial / parallel\s+\d+\.\d+ x", result.stdout)
    assert re.search(r"parallel / slowest\s+\d+\.\d+", result.stdout)


def test_bench_setup_prints_every_run_and_touches_only_the_redeployed_service(base_image, testenv, tmp_path):
    """On the real test environment: three cold setups (three real kind clusters)."""
    result = invoke(["bench.setup", "--scale", "0.005"],
                    {"KINDLING_LOCK_DIR": str(tmp_path), "KINDLING_MIN_FREE_DISK": "50MiB"})
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ("cold serial", "cold phased", "cold pipelined", "warm re-run", "partial redeploy"):
        assert label in result.stdout
    assert "(builds in warm run: 0)" in result.stdout
    assert re.search(r"partial redeploy changed\s+aianalysis$", result.stdout, re.M)


def test_bench_reload_prints_bytes(base_image, registry, tmp_path):  # registry: needs docker-registry
    result = invoke(["bench.reload", "--size", "4"], {"KINDLING_LOCK_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"reload:\s+registry push\s+[\d.]+ KiB, archive \(kind load\)\s+[\d.]+ MiB", result.stdout)
