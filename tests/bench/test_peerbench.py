"""bench.peers' own logic, without the tools: the two equivalent stacks, the wrappers, the summary."""

import subprocess

import yaml

from tasks.libs.bench import peers as peerbench
from tasks.libs.bench import peerworkload
from tasks.libs.bench.peers import Measured
from tasks.libs.stack.model import load_stack


def test_both_tools_get_the_same_services_sources_and_manifests(tmp_path):
    work = peerworkload.write_workload(tmp_path, 3, "localhost/base:1")
    stack = load_stack(work.stack, env={})  # every check a user's stack gets
    assert sorted(stack.services) == work.services == ["svc001", "svc002", "svc003"]
    skaffold = yaml.safe_load(work.skaffold.read_text())
    assert skaffold["apiVersion"] == peerworkload.SKAFFOLD_SCHEMA
    artifacts = skaffold["build"]["artifacts"]
    for service, artifact in zip(work.services, artifacts, strict=True):
        # Skaffold builds the very context kindling builds, with the same Containerfile and argument.
        assert (tmp_path / artifact["context"]).resolve() == (tmp_path / "src" / service).resolve()
        assert artifact["docker"] == {
            "dockerfile": "Containerfile",
            "buildArgs": {"BASE_IMAGE": "localhost/base:1"},
        }
        assert stack.services[service].build.args == {"BASE_IMAGE": "localhost/base:1"}
        # Its manifests differ only in the image name, which Skaffold replaces by its artifact's.
        ours = list(yaml.safe_load_all((tmp_path / "manifests" / f"{service}.yaml").read_text()))
        theirs = list(yaml.safe_load_all((tmp_path / "skaffold-manifests" / f"{service}.yaml").read_text()))
        image = theirs[0]["spec"]["template"]["spec"]["containers"][0].pop("image")
        assert image == artifact["image"] == f"{work.skaffold_repository}/{service}"
        ours[0]["spec"]["template"]["spec"]["containers"][0].pop("image")
        assert ours == theirs
        assert ours[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 1
    assert skaffold["manifests"]["rawYaml"] == [f"skaffold-manifests/{s}.yaml" for s in work.services]
    assert skaffold["build"]["local"]["concurrency"] == peerworkload.CONCURRENCY
    assert skaffold["deploy"] == {"kubectl": {}, "statusCheck": True}
    # kind's context name is what makes Skaffold load into kind rather than push.
    assert work.cluster == stack.cluster_name


def test_a_rewrite_changes_only_the_named_services_files(tmp_path):
    work = peerworkload.write_workload(tmp_path, 3, "localhost/base:1")
    before = {s: (tmp_path / "src" / s / "version.txt").read_text() for s in work.services}
    work.rewrite(["svc002"], "stamp")
    after = {s: (tmp_path / "src" / s / "version.txt").read_text() for s in work.services}
    assert after["svc002"] == "stamp\n" != before["svc002"]
    assert after["svc001"] == before["svc001"] and after["svc003"] == before["svc003"]


def test_the_counting_wrapper_counts_each_call_and_runs_the_real_program(tmp_path):
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "echo"
    wrapper.write_text(peerbench.COUNTING_WRAPPER.format(name="echo", log=log, real="/bin/echo"))
    wrapper.chmod(0o755)
    for word in ("one", "two words"):
        assert subprocess.run([wrapper, word], capture_output=True, text=True).stdout == f"{word}\n"
    assert log.read_text().splitlines() == ["echo", "echo"]


def test_busy_fraction_is_the_share_of_non_idle_time():
    assert peerbench.busy_fraction((100, 1000), (150, 1100)) == 0.5
    assert peerbench.busy_fraction((100, 1000), (100, 1000)) == 0.0
    busy, total = peerbench.cpu_times()
    assert 0 <= busy <= total


def test_summary_takes_medians_ranges_and_the_ratio_of_the_medians():
    measured = [(3, Measured("skaffold", "cold", wall, 9)) for wall in (10.0, 9.0, 12.0)] + [
        (3, Measured("kindling", "cold", wall, 20, outside, before))
        for wall, outside, before in ((7.0, 1.0, 0.4), (8.0, 2.0, 0.9), (6.0, 3.0, 0.5))
    ]
    measured += [
        (3, Measured("skaffold", "warm", 2.0, 5)),
        (3, Measured("kindling", "warm", 1.5, 8, 0.5, 0.3)),
    ]
    rows = peerbench.summarize(measured)
    assert [(r[0], r[1]) for r in rows] == [(3, "cold"), (3, "warm")]
    count, scenario, spread, commands, outside, ratio = rows[0]
    assert spread == {"skaffold": (10.0, 9.0, 12.0), "kindling": (7.0, 6.0, 8.0)}
    assert commands == {"skaffold": 9, "kindling": 20}
    assert outside == (2.0, 0.5)  # medians: outside the graph, and before it
    assert ratio == 0.7
    text = peerbench.table(rows)
    cold, warm = text.splitlines()[1:]
    assert "10.0 s (9.0-12.0)" in cold and "7.0 s (6.0-8.0)" in cold and "0.70" in cold
    assert cold.endswith("2.0 s (0.5 s)")
    assert "<= 0.8  met" in cold  # 0.70 against the cold goal of 0.8
    assert "0.75" in warm and "<= 0.5  missed" in warm
