"""A service's `coverage:` section: what its workloads get in coverage mode (`--coverage`), beyond
the instrumented build its `build.coverage_args` asks for.

Kubernaut's AIAnalysis harness (test/infrastructure, DD-TEST-007) shows the two needs:
- the Agent's Deployment gets GOCOVERDIR and the /coverdata mount although the AIAnalysis suite
  builds its image without coverage (kubernautagent.go DeployKubernautAgentOnly): `mount: true`;
- Data Storage's pod runs as root in coverage mode, so its binary, built to run as uid 1001, can
  write into the node's /coverdata (shared_e2e.go coverageSecurityContextYAMLFixture):
  `pod_security_context: {runAsUser: 0, runAsGroup: 0}`.
"""

from dataclasses import dataclass, field

from .stackfile import Checker, type_name

COVERAGE_KEYS = {"mount", "pod_security_context"}


@dataclass(frozen=True)
class CoverageSpec:
    mount: bool = False  # its containers get GOCOVERDIR=/coverdata and the coverage mount
    pod_security_context: dict = field(default_factory=dict)  # merged into those pods' securityContext


def parse(c: Checker, raw, where: str, instrumented: bool) -> CoverageSpec:
    """instrumented: the service's build has coverage_args, so `mount` defaults to true."""
    if raw is None:
        return CoverageSpec(mount=instrumented)
    example = "write e.g. `coverage: {mount: true, pod_security_context: {runAsUser: 0}}`"
    if not isinstance(raw, dict):
        c.fail(where, f"must be a mapping, got {type_name(raw)}", example)
    c.mapping(raw, where, COVERAGE_KEYS)
    mount = c.flag(raw.get("mount", instrumented), f"{where}.mount", "write `mount: true`")
    context = raw.get("pod_security_context", {}) or {}
    if not isinstance(context, dict):
        c.fail(
            f"{where}.pod_security_context",
            f"must be a mapping (a PodSecurityContext), got {type_name(context)}",
            "write e.g. `pod_security_context: {runAsUser: 0, runAsGroup: 0}`",
        )
    if context and not mount:
        c.fail(
            f"{where}.pod_security_context",
            "applies to the pods that get the coverage mount, and this service's get none",
            "add `mount: true`, or `build.coverage_args`",
        )
    return CoverageSpec(mount, dict(context))
