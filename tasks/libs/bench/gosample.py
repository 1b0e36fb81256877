"""A generated Go service, for the inner-loop benchmark and the build-cache tests.

No registry is reachable, so the Go toolchain image is made here: the host's Go (`go env
GOROOT`), trimmed to what `go build` needs with CGO_ENABLED=0, copied onto the local busybox base
image. The service is a module of several packages of generated code (thousands of lines, no
external dependency, so no network), built in a multi-stage Containerfile with a `COPY . .` layer,
as real Go services are: compilation dominates its build.
"""

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import yaml

from .. import samples
from ..adapters.engine import DIGEST_LABEL, Engine
from ..errors import KindlingError
from ..procs.runner import Runner

IMAGE_REPOSITORY = "localhost/kindling-sample/go"
MODULE = "example.com/inner"
# Folders of GOROOT `go build` never reads: the toolchain's own sources, tests, docs.
SKIPPED_TOP = {"api", "doc", "lib", "misc", "test"}
TOOLS = {"compile", "link", "asm"}  # pkg/tool/<os_arch>: all a CGO_ENABLED=0 build runs

TOOLCHAIN_CONTAINERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY go /usr/local/go
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /tmp /root /go /etc && /bin/busybox chmod 1777 /tmp \
&& /bin/busybox echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd \
&& /bin/busybox echo 'builder:x:1001:0:builder:/home/builder:/bin/sh' >> /etc/passwd"]
ENV PATH=/usr/local/go/bin:/go/bin:/bin GOPATH=/go CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off
"""

SERVICE_CONTAINERFILE = """\
ARG GO_IMAGE
ARG BASE_IMAGE
FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY . .
# -v names every package compiled: a build's log shows what its cache spared.
RUN ["go", "build", "-v", "-o", "/out/app", "./cmd/app"]

FROM ${BASE_IMAGE}
COPY --from=build /out/app /app
CMD ["/app"]
"""

VERSION_LINE = 'const version = "{}"'


def go_env(runner: Runner, name: str) -> str:
    result = runner.run(["go", "env", name], check=False, mutating=False, timeout=60)
    if result.exit_code != 0 or not result.stdout.strip():
        raise KindlingError(f"`go env {name}` failed: the Go sample needs Go on PATH (https://go.dev/dl)")
    return result.stdout.strip()


def ensure_go_image(engine: Engine, base_image: str) -> str:
    """The toolchain image for the host's Go version, built once and kept (like the base image)."""
    version = go_env(engine.runner, "GOVERSION")
    ref = f"{IMAGE_REPOSITORY}:{version}"
    if engine.image_exists(ref):
        return ref
    goroot = Path(go_env(engine.runner, "GOROOT"))
    tool_folder = f"{go_env(engine.runner, 'GOOS')}_{go_env(engine.runner, 'GOARCH')}"
    with tempfile.TemporaryDirectory(prefix="kindling-go-") as folder:
        context = Path(folder)
        copy_toolchain(goroot, context / "go", tool_folder)
        (context / "Containerfile").write_text(TOOLCHAIN_CONTAINERFILE)
        engine.build(ref, context / "Containerfile", context, args={"BASE_IMAGE": base_image})
    return ref


def copy_toolchain(goroot: Path, target: Path, tool_folder: str) -> None:
    """What `go build` reads: bin/go, the compiler, linker and assembler, and the standard
    library's sources (no tests, testdata or the toolchain's own sources in src/cmd)."""
    for base, folders, files in os.walk(goroot):
        relative = Path(base).relative_to(goroot)
        parts = relative.parts
        if parts[:1] and parts[0] in SKIPPED_TOP or parts[:2] == ("src", "cmd"):
            folders[:] = []
            continue
        folders[:] = [f for f in folders if f != "testdata"]
        if parts == ("bin",):
            files = [f for f in files if f == "go"]
        if parts[:2] == ("pkg", "tool"):
            if parts != ("pkg", "tool", tool_folder):
                continue
            files = [f for f in files if f in TOOLS]
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            if not name.endswith("_test.go"):
                _link_or_copy(Path(base) / name, target / relative / name)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)  # same file system: no bytes copied
    except OSError:
        shutil.copy2(source, destination)


def write_service(context: Path, packages: int = 8, functions: int = 300, version: str = "1") -> int:
    """A Go module: `packages` generated packages in a chain (each imports the previous one) and a
    main package printing its version. Returns the generated line count.

    Each call writes a tree of its own (a token in main.go): podman keeps the layers of earlier
    builds, and the same sources would reuse their `go build` layer instead of compiling."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "go.mod").write_text(f"module {MODULE}\n\ngo 1.21\n")
    (context / "Containerfile").write_text(SERVICE_CONTAINERFILE)
    lines = 0
    for index in range(packages):
        folder = context / "internal" / f"p{index}"
        folder.mkdir(parents=True, exist_ok=True)
        text = _package(index, functions)
        (folder / "gen.go").write_text(text)
        lines += text.count("\n")
    main = context / "cmd" / "app"
    main.mkdir(parents=True, exist_ok=True)
    last = f"p{packages - 1}"
    # It prints its version and exits; with `serve` (its Deployment's command) it then runs until
    # stopped, as a service does under a real kubelet, which restarts a container that exits.
    (main / "main.go").write_text(
        f"// Generated sample, tree {uuid.uuid4().hex}.\n\n"
        f'package main\n\nimport (\n\t"fmt"\n\t"os"\n\t"os/signal"\n\t"syscall"\n\n'
        f'\t"{MODULE}/internal/{last}"\n)\n\n'
        f"{VERSION_LINE.format(version)}\n\n"
        f'func main() {{\n\tfmt.Println("version", version, "checksum", {last}.F1(3))\n'
        '\tif len(os.Args) > 1 && os.Args[1] == "serve" {\n'
        "\t\tstop := make(chan os.Signal, 1)\n"
        "\t\tsignal.Notify(stop, syscall.SIGTERM, os.Interrupt)\n"
        "\t\t<-stop\n\t}\n}\n"
    )
    return lines


def _package(index: int, functions: int) -> str:
    previous = f'\t"{MODULE}/internal/p{index - 1}"\n' if index else ""
    parts = [f'package p{index}\n\nimport (\n\t"fmt"\n\t"strings"\n{previous})\n']
    for f in range(functions):
        seed = f"p{index - 1}.F0(n)" if index else "n"
        parts.append(f"""
type T{f} struct {{
\tA, B int
\tS    string
\tM    map[string]int
}}

func (t *T{f}) Mix(n int) string {{
\tvar b strings.Builder
\tfor i := 0; i < n%7+1; i++ {{
\t\tt.A += i * {f + 1}
\t\tt.B ^= t.A << 1
\t\tif t.M == nil {{
\t\t\tt.M = map[string]int{{}}
\t\t}}
\t\tt.M[fmt.Sprint(i)] = t.A + t.B
\t\tb.WriteString(fmt.Sprintf("%d-%d;", t.A, t.B))
\t}}
\treturn b.String() + t.S
}}

func F{f}(n int) int {{
\tt := &T{f}{{A: n, S: "f{f}"}}
\treturn len(t.Mix({seed})) + {f}
}}
""")
    return "".join(parts)


def set_version(context: Path, version: str) -> None:
    """The one-line change: the main package's version constant."""
    main = context / "cmd" / "app" / "main.go"
    lines = main.read_text().splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith(VERSION_LINE.split('"')[0])]
    if len(found) != 1:
        raise KindlingError(f"{main}: no single version line to change")
    lines[found[0]] = VERSION_LINE.format(version) + "\n"
    main.write_text("".join(lines))


def write_stack(
    folder: Path,
    *,
    name: str,
    project: str,
    go_image: str,
    base_image: str,
    service: str = "api",
    caches=("go",),
    packages: int = 8,
    functions: int = 300,
    stack_file: str = "stack.yaml",
) -> Path:
    """A stack of one Go service (a Deployment and a Service); caches=() leaves `caches` out.
    Another call with another stack_file and the same folder describes the same sources."""
    context = folder / "src" / service
    if not (context / "go.mod").exists():
        write_service(context, packages, functions)
    (folder / "manifests").mkdir(parents=True, exist_ok=True)
    docs = samples.manifests(service, {})
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["command"] = ["/app", "serve"]
    (folder / "manifests" / f"{service}.yaml").write_text(yaml.safe_dump_all(docs))
    build = {
        "containerfile": f"src/{service}/Containerfile",
        "context": f"src/{service}",
        "args": {"GO_IMAGE": go_image, "BASE_IMAGE": base_image},
    }
    if caches:
        build["caches"] = list(caches)
    stack = {
        "name": name,
        "project": project,
        "namespace": "inner",
        "cluster": {"name": f"{project}-e2e"},
        "services": {
            service: {"build": build, "manifests": [f"manifests/{service}.yaml"], "ready": {"timeout": 60}}
        },
    }
    path = folder / stack_file
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    return path


def remove_stage_images(engine: Engine, digests) -> None:
    """The build stage's images a multi-stage build leaves untagged (podman keeps them as its layer
    cache), found by the inputs-digest label kindling puts on every image of a build. Images another
    image still builds on are kept (podman refuses to remove them)."""
    for _ in range(5):  # a child goes before its parent: one pass per level
        found = set()
        for digest in digests:
            listed = engine.runner.run(
                [
                    engine.program,
                    "images",
                    "--all",
                    "--quiet",
                    "--filter",
                    "dangling=true",
                    "--filter",
                    f"label={DIGEST_LABEL}={digest}",
                ],
                check=False,
                mutating=False,
                timeout=120,
            )
            found.update(listed.stdout.split())
        if not found:
            return
        engine.runner.run([engine.program, "rmi", *sorted(found)], check=False, timeout=300)


def compiled_packages(log_text: str) -> set:
    """The module's packages a build compiled, from `go build -v` lines in its log."""
    return {line.strip() for line in log_text.splitlines() if line.strip().startswith(MODULE + "/")}
