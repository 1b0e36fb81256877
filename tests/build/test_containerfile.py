"""The COPY/ADD sources a Containerfile takes from its build context (tasks/libs/build/containerfile.py).
Pure."""

from tasks.libs.build import containerfile

HOLMESGPT_SHAPED = """\
# HolmesGPT API (comment lines before the first instruction are not directives)
FROM registry.example/python:3.12 AS builder
USER root
RUN dnf install -y gcc && \\
    dnf clean all
WORKDIR /opt/app-root/src
# the SDK, from a submodule
COPY --chown=1001:0 dependencies/ ../dependencies/
copy --chown=1001:0 holmesgpt-api/requirements.txt ./
FROM registry.example/python:3.12
COPY --from=builder /opt/app-root/lib /opt/app-root/lib
COPY --chown=1001:0 ["holmesgpt-api/src/", "./src/"]
ADD https://example.com/tool.tar.gz /opt/
ADD --chmod=755 holmesgpt-api/entrypoint.sh \\
    # a comment inside a continued instruction
    \\
    ./
"""


def sources(text, args=None):
    return [(c.line, c.keyword, c.sources) for c in containerfile.copies(text, args)]


def test_sources_lines_flags_json_and_continuations():
    assert sources(HOLMESGPT_SHAPED) == [
        (8, "COPY", ("dependencies/",)),
        (9, "COPY", ("holmesgpt-api/requirements.txt",)),
        (12, "COPY", ("holmesgpt-api/src/",)),
        (14, "ADD", ("holmesgpt-api/entrypoint.sh",)),
    ]
    first = containerfile.copies(HOLMESGPT_SHAPED)[0]
    assert str(first) == "COPY --chown=1001:0 dependencies/ ../dependencies/"


def test_several_sources_and_the_escape_directive():
    text = "# escape=`\nFROM scratch\nCOPY go.mod go.sum `\n     ./\nRUN echo done\n"
    assert sources(text) == [(3, "COPY", ("go.mod", "go.sum"))]


def test_heredocs_are_skipped():
    text = (
        "FROM scratch\nCOPY <<EOF /etc/app.conf\nCOPY not-an-instruction /x\nEOF\n"
        "RUN <<-END\n\tCOPY nor-this /y\n\tEND\nCOPY real /z\n"
    )
    assert sources(text) == [(8, "COPY", ("real",))]


def test_variables_from_args_env_and_build_args():
    text = (
        "ARG COMPONENT=datastorage\n"
        "FROM scratch\n"
        "ARG COMPONENT\n"
        "ARG FLAVOUR=plain\n"
        "ENV CONFIG_DIR=config/${COMPONENT}\n"
        "COPY cmd/${COMPONENT}/ ./cmd/\n"
        "COPY $CONFIG_DIR/$FLAVOUR.yaml ./\n"
        "COPY ${UNSET_DIR}/x ./\n"
        "COPY ${UNSET_DIR:-fallback}/y ./\n"
    )
    assert sources(text) == [
        (6, "COPY", ("cmd/datastorage/",)),
        (7, "COPY", ("config/datastorage/plain.yaml",)),
        (9, "COPY", ("fallback/y",)),
    ]
    # build args override ARG defaults; an ARG a stage does not declare again is not in it
    assert sources(text, {"COMPONENT": "aianalysis", "FLAVOUR": "tls"})[:2] == [
        (6, "COPY", ("cmd/aianalysis/",)),
        (7, "COPY", ("config/aianalysis/tls.yaml",)),
    ]
    assert sources("ARG DIR=a\nFROM scratch\nCOPY ${DIR}/x ./\n") == []


def test_instructions_keep_their_first_line():
    found = containerfile.instructions('\n# c\nFROM a\n\nRUN x \\\n  y\nCMD ["z"]\n')
    assert [(i.line, i.keyword, i.arguments) for i in found] == [
        (3, "FROM", "a"),
        (5, "RUN", "x y"),
        (7, "CMD", '["z"]'),
    ]
