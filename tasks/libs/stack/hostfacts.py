"""Facts about the host that build args may use: `${KINDLING_HOST_GOARCH}` and `${KINDLING_HOST_OS}`,
named as Go names them (GOARCH, GOOS), so a Containerfile's `ARG GOARCH` gets the host's architecture
as Kubernaut's harness passes it (`--build-arg GOARCH=<host>`). Pure."""

import platform

# platform.machine() -> GOARCH (the names `go tool dist list` prints).
GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}
GOARCH_VARIABLE, OS_VARIABLE = "KINDLING_HOST_GOARCH", "KINDLING_HOST_OS"


def variables(machine: str | None = None, system: str | None = None) -> dict:
    """{KINDLING_HOST_GOARCH: amd64|arm64|..., KINDLING_HOST_OS: linux|darwin|...}. A machine Go has
    no name for is passed on as the platform calls it, lowercased."""
    machine = (platform.machine() if machine is None else machine).lower()
    system = (platform.system() if system is None else system).lower()
    return {GOARCH_VARIABLE: GOARCH.get(machine, machine), OS_VARIABLE: system}


def with_host_facts(env) -> dict:
    """The environment build args expand from: the host facts, which the environment may override
    (e.g. KINDLING_HOST_GOARCH=arm64 to build for another architecture)."""
    return {**variables(), **env}
