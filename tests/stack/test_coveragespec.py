"""A service's `coverage:` section and what coverage mode renders from it: the stack file, then the
objects deploy.rendered gives kubectl (commands scripted; test_suite.py runs coverage for real)."""

import pytest
import yaml

from tasks.libs import render
from tasks.libs.environment import Environment
from tasks.libs.errors import StackError
from tasks.libs.phases import deploy
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.samples import write_stack
from tasks.libs.settings import build_settings
from tasks.libs.stack.coveragespec import CoverageSpec
from tasks.libs.stack.model import load_stack

ROOT_CONTEXT = {"runAsUser": 0, "runAsGroup": 0}


def stack_with(tmp_path, coverage_of: dict, instrumented=("db",)):
    """Services db, agent and web (each a Deployment of its own image); `instrumented` ones have
    coverage_args; coverage_of: service -> its `coverage:` section."""
    path = write_stack(
        tmp_path / "stack",
        {"db": {}, "agent": {}, "web": {}},
        name="cov",
        project="cov",
        base_image="busybox",
    )
    raw = yaml.safe_load(path.read_text())
    for name in instrumented:
        raw["services"][name]["build"]["coverage_args"] = {"GOFLAGS": "-cover"}
    for name, section in coverage_of.items():
        raw["services"][name]["coverage"] = section
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def pod_specs(tmp_path, path, coverage=True) -> dict:
    env = {"KINDLING_HOME": str(tmp_path / "home"), "KINDLING_LOCK_DIR": str(tmp_path), "USER": "t"}
    stack = load_stack(path, env=env)
    settings = build_settings(stack, env, memory_budget=0, coverage=coverage)
    ctx = Environment(stack, settings, env, runner=FakeRunner()).ctx
    for name in stack.services:
        ctx.refs[name] = f"localhost/cov/{name}:t"
    return {
        name: next(d for d in deploy.rendered(ctx, name) if d["kind"] == "Deployment")["spec"]["template"][
            "spec"
        ]
        for name in stack.services
    }


def covered(spec) -> bool:
    container = spec["containers"][0]
    return {"name": "GOCOVERDIR", "value": "/coverdata"} in (container.get("env") or []) and any(
        v["name"] == render.COVERAGE_VOLUME for v in spec.get("volumes") or []
    )


def test_defaults_follow_coverage_args(tmp_path):
    services = load_stack(stack_with(tmp_path, {}), env={}).services
    assert services["db"].coverage == CoverageSpec(mount=True)
    assert services["agent"].coverage == CoverageSpec(mount=False)


def test_coverage_mode_mounts_what_the_stack_says_and_runs_those_pods_as_it_says(tmp_path):
    """The AIAnalysis harness's shape: Data Storage instrumented and run as root, the Agent mounted
    without an instrumented build, the rest untouched."""
    path = stack_with(tmp_path, {"db": {"pod_security_context": ROOT_CONTEXT}, "agent": {"mount": True}})
    specs = pod_specs(tmp_path, path)
    assert covered(specs["db"]) and specs["db"]["securityContext"] == ROOT_CONTEXT
    assert covered(specs["agent"]) and "securityContext" not in specs["agent"]
    assert not covered(specs["web"]) and "securityContext" not in specs["web"]
    plain = pod_specs(tmp_path, path, coverage=False)  # without coverage mode: the manifests as written
    assert not any(covered(spec) or "securityContext" in spec for spec in plain.values())


def test_an_instrumented_service_can_opt_out_of_the_mount(tmp_path):
    specs = pod_specs(tmp_path, stack_with(tmp_path, {"db": {"mount": False}}))
    assert not covered(specs["db"])


def test_the_context_is_merged_into_the_pods_own():
    docs = [
        {
            "kind": "Deployment",
            "metadata": {"name": "db"},
            "spec": {
                "template": {
                    "spec": {
                        "securityContext": {"fsGroup": 2000, "runAsUser": 1001},
                        "containers": [{"name": "db", "image": "localhost/cov/db:t"}],
                    }
                }
            },
        }
    ]
    (doc,) = render.add_coverage(docs, {"localhost/cov/db:t"}, ROOT_CONTEXT)
    assert doc["spec"]["template"]["spec"]["securityContext"] == {"fsGroup": 2000, **ROOT_CONTEXT}
    assert docs[0]["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1001  # not changed


@pytest.mark.parametrize(
    "section, field, words",
    [
        ("yes", "services.agent.coverage", "must be a mapping"),
        ({"mount": "yes"}, "services.agent.coverage.mount", "true or false"),
        (
            {"mount": True, "pod_security_context": [0]},
            "services.agent.coverage.pod_security_context",
            "mapping",
        ),
        ({"pod_security_context": ROOT_CONTEXT}, "services.agent.coverage.pod_security_context", "get none"),
        ({"mounts": True}, "services.agent.coverage.mounts", "unknown key"),
    ],
)
def test_a_bad_coverage_section_names_the_field_and_the_fix(tmp_path, section, field, words):
    with pytest.raises(StackError) as caught:
        load_stack(stack_with(tmp_path, {"agent": section}), env={})
    assert caught.value.field == field and words in str(caught.value), str(caught.value)
