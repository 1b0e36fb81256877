"""The stack file's `registry:` and `test:` sections (pure): where images are pushed in
registry mode, and the suite `e2e.test` runs."""

from dataclasses import dataclass
from pathlib import Path

from .. import imagerefs
from .stackfile import Checker, positive_seconds, show

REGISTRY_KEYS = {"host", "tls_verify"}
TEST_KEYS = {"command", "workdir", "env", "timeout"}
DEFAULT_TEST_TIMEOUT = 3600


@dataclass(frozen=True)
class TestSpec:
    command: tuple  # argument list
    workdir: Path
    env: dict
    timeout: int


def parse_registry(c: Checker, raw):
    """`registry: host[:port]` or `{host: ..., tls_verify: false}`; IMAGE_REGISTRY overrides the host."""
    if isinstance(raw, str):
        raw = {"host": raw}
    raw = c.mapping(raw or {}, "registry", REGISTRY_KEYS)
    host = c.env.get("IMAGE_REGISTRY") or raw.get("host") or ""
    field_name = "registry (from IMAGE_REGISTRY)" if c.env.get("IMAGE_REGISTRY") else "registry.host"
    if host:
        try:
            parsed = imagerefs.parse(f"{host}/x/y")
        except imagerefs.BadReference:
            parsed = None
        if parsed is None or parsed.registry != host:
            c.fail(
                field_name, f"{show(host)} is not a registry host", "write host[:port], e.g. localhost:5001"
            )
        if host == imagerefs.LOCAL_REGISTRY:
            c.fail(
                field_name,
                "`localhost` without a port is podman's local image store, not a registry",
                "give the registry's port, e.g. localhost:5001",
            )
    tls_verify = raw.get("tls_verify", True)
    env_verify = c.env.get("IMAGE_REGISTRY_TLS_VERIFY")
    if env_verify:
        tls_verify = env_verify.strip().lower() not in ("0", "false", "no", "off")
    if not isinstance(tls_verify, bool):
        c.fail("registry.tls_verify", "must be true or false")
    return host, tls_verify


def parse_test(c: Checker, raw, source) -> TestSpec:
    c.mapping(raw, "test", TEST_KEYS)
    command = raw.get("command")
    if isinstance(command, str):
        c.fail(
            "test.command",
            "must be an argument list, not a shell string",
            "write e.g. [ginkgo, -v, ./test/e2e] (run a shell explicitly if you need one: [sh, -c, '...'])",
        )
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, (str, int, float)) for a in command)
    ):
        c.fail(
            "test.command", "must be a non-empty list of arguments", "write e.g. [go, test, ./test/e2e/...]"
        )
    workdir = c.existing(
        c.path_value(raw.get("workdir", "."), "test.workdir", source, source), "test.workdir", "folder"
    )
    timeout = raw.get("timeout", DEFAULT_TEST_TIMEOUT)
    if not positive_seconds(timeout):
        c.fail("test.timeout", f"must be a positive number of seconds, got {show(timeout)}")
    env = c.args(raw.get("env"), "test.env")
    return TestSpec(tuple(c.argument(a, "test.command", source) for a in command), workdir, env, int(timeout))
