"""The benchmarks run end to end (scaled down) and print their ratios; figures are not asserted."""

import json
import re

from conftest import invoke


def test_bench_build_prints_ratios(base_image, tmp_path):
    result = invoke(["bench.build", "--scale", "0.2"], {"KINDLING_LOCK_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"serial / parallel\s+\d+\.\d+ x", result.stdout)
    assert re.search(r"parallel / slowest\s+\d+\.\d+", result.stdout)


def test_bench_setup_prints_every_run_and_touches_only_the_redeployed_service(base_image, testenv, tmp_path):
    """On the real test environment: three cold setups (three real kind clusters)."""
    result = invoke(
        ["bench.setup", "--scale", "0.005"],
        {"KINDLING_LOCK_DIR": str(tmp_path), "KINDLING_MIN_FREE_DISK": "50MiB"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for label in (
        "cold serial",
        "cold phased",
        "cold batched",
        "cold pipelined",
        "warm re-run",
        "partial redeploy",
        "pipelined / batched",
    ):
        assert label in result.stdout
    assert re.search(r"\(builds in warm run: 0; commands \d+, mutating 0\)", result.stdout)
    assert re.search(r"partial redeploy changed\s+aianalysis$", result.stdout, re.M)
    # The redeploy against its own build, load and rollout, all three measured in that run.
    assert re.search(
        r"partial / its own steps\s+\d+\.\d\d\s+\(image [\d.]+ s \+ load [\d.]+ s \+ deploy [\d.]+ s;",
        result.stdout,
    ), result.stdout


def test_own_step_seconds_adds_the_services_image_load_and_deploy_across_a_pre_chains_runs(tmp_path):
    from tasks.libs.bench.setupbench import own_step_seconds
    from tasks.libs.plan import StepKind

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(
        json.dumps(
            {
                "steps": [
                    {"id": "image:api", "status": "ok", "seconds": 2.0},
                    {"id": "image:db", "status": "ok", "seconds": 9.0},
                    {"id": "deploy:db", "status": "ok", "seconds": 9.0},
                ]
            }
        )
    )
    second.write_text(
        json.dumps(
            {
                "steps": [
                    {"id": "load:api", "status": "ok", "seconds": 1.5},
                    {"id": "deploy:api", "status": "ok", "seconds": 3.0},
                    {"id": "deploy:api", "status": "failed", "seconds": 50.0},
                ]
            }
        )
    )
    assert own_step_seconds([first, second], "api") == {
        StepKind.IMAGE: 2.0,
        StepKind.LOAD: 1.5,
        StepKind.DEPLOY: 3.0,
    }


def test_bench_reload_prints_bytes(base_image, registry, tmp_path):  # registry: needs docker-registry
    result = invoke(["bench.reload", "--size", "4"], {"KINDLING_LOCK_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        r"reload:\s+registry push\s+[\d.]+ KiB, archive \(kind load\)\s+[\d.]+ MiB", result.stdout
    )


def test_bench_inner_prints_rebuild_ratio_deploy_and_the_image_check(base_image, testenv, tmp_path):
    """On the real test environment, scaled down: a Go service of 2 small packages."""
    result = invoke(
        ["bench.inner", "--packages", "2", "--functions", "20"],
        {"KINDLING_LOCK_DIR": str(tmp_path), "KINDLING_MIN_FREE_DISK": "50MiB"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"rebuild with / without caches\s+\d+\.\d+", result.stdout)
    assert re.search(r"rebuild with caches\s+[\d.]+ s\s+compiled 1 packages", result.stdout)
    assert re.search(
        r"deploy\.api after a one-line change\s+[\d.]+ s .*built; rolled out: yes", result.stdout
    )
    assert "same files" in result.stdout and "binaries print the same: 'version 3 " in result.stdout


def test_bench_scale_prints_each_size_the_ratios_and_the_disk_bytes(base_image, testenv, tmp_path):
    """On the real test environment, scaled down to stacks of 1 and 2 services; it deletes what it made."""
    before = set(testenv.clusters())
    result = invoke(
        ["bench.scale", "--sizes", "2,1"],
        {"KINDLING_LOCK_DIR": str(tmp_path), "KINDLING_MIN_FREE_DISK": "50MiB"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = re.findall(
        r"^\s+(\d+)\s+[\d.]+s\s+[\d.]+s\s+(\d+)\s+(\d+)\s+(\d+)\s+[\d.]+ MiB\s+(.*)$", result.stdout, re.M
    )
    assert [(r[0], r[4]) for r in rows] == [("1", "1 streamed"), ("2", "2 streamed")], result.stdout
    assert all(int(cold) > int(warm) for _, cold, warm, _, _ in rows)
    assert re.search(r"warm\(2\) / warm\(1\)\s+\d+\.\d+", result.stdout)
    assert re.search(r"commands\(2\) / commands\(1\)\s+\d+\.\d+", result.stdout)
    assert re.search(r"archive files .*MiB\s+loads: 2 loaded$", result.stdout, re.M)
    assert re.search(r"archive / streamed\s+\d+\.\d+ x", result.stdout)
    assert not [c for c in set(testenv.clusters()) - before if c.startswith("scale")]
