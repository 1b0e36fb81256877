"""A service's objects from a local Helm chart: `helm: {chart: DIR, release: NAME, values: [FILE...],
set: {KEY: VALUE}}`, rendered with `helm template`. One backend of deploysources."""

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..checks.checkresult import Check, Probe, query
from ..procs.masking import SECRET_NAME_RE
from ..stack.stackfile import Checker, expand_env, show, type_name

KEY = "helm"  # the service's key in the stack file
KEYS = {"chart", "release", "values", "set"}
# Helm's own rule for release names (helm.sh/helm/v3 pkg/chartutil/validate_name.go).
RELEASE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
RELEASE_MAX = 53
INSTALL = "install Helm 3.10 or newer: https://helm.sh/docs/intro/install/ (then `invoke doctor`)"


@dataclass(frozen=True)
class Helm:
    """A local chart rendered with `helm template RELEASE CHART`."""

    chart: Path  # the chart's folder (holds Chart.yaml)
    release: str
    values: tuple = ()  # values files, in the order helm merges them
    set_values: dict = field(default_factory=dict)  # key in helm's --set syntax -> scalar

    key = KEY
    tool = "helm template"
    install_hint = INSTALL  # said when the tool is missing (exit 127)

    @property
    def origin(self) -> Path:
        """Where the objects come from, as stack.check and the deploy step name it."""
        return self.chart

    def files(self, where: str) -> list:
        """(stack-file field, path, "file" | "folder") of everything it reads."""
        return [(f"{where}.chart", self.chart, "folder")] + [
            (f"{where}.values[{i}]", path, "file") for i, path in enumerate(self.values)
        ]

    def argv(self, namespace: str) -> list:
        """`helm template` of a local chart.

        --include-crds: helm leaves the chart's crds/ folder out of `template` otherwise, and
        kindling applies CRDs first. --skip-tests: test hooks are for `helm test`, not objects to
        run. Other hooks are applied as ordinary objects (a pre-install Job runs and is waited for
        like any Job). `set:` values go in as --set-json, so each means what the same value means
        in a values file (a quoted "true" stays a string, 1.5 stays a number) and a comma or
        backslash in a value needs no escaping (helm.sh/helm/v3 pkg/strvals/parser.go: --set
        types its values and splits at commas).
        """
        argv = ["helm", "template", self.release, str(self.chart), "--namespace", namespace]
        argv += ["--include-crds", "--skip-tests"]
        for values_file in self.values:
            argv += ["--values", str(values_file)]
        for key, value in self.set_values.items():
            argv += ["--set-json", f"{key}={json.dumps(value)}"]
        return argv

    def secrets(self) -> list:
        """`set:` values whose key looks secret (db.password, auth.token): masked wherever kindling
        prints."""
        return [str(value) for key, value in self.set_values.items() if SECRET_NAME_RE.search(key)]

    @staticmethod
    def tool_check(runner, kubectl_text) -> Check:
        """helm on PATH, 3.10 or newer (for `template --set-json`)."""
        from ..checks.preflight import version_check  # preflight's table holds every tool's minimum

        if shutil.which("helm") is None:
            return version_check("helm", Probe(None))
        result, failure = query(runner, ["helm", "version", "--short"], timeout=30)
        return version_check("helm", Probe(result.stdout if result else None, failure))


def parse(c: Checker, raw, where, service_name, source) -> Helm:
    """`helm: {chart: DIR, release: NAME, values: [FILE...], set: {KEY: VALUE}}`; a local chart only."""
    if isinstance(raw, str):
        raw = {"chart": raw}
    c.mapping(raw, where, KEYS)
    if raw.get("chart") is None:
        c.fail(f"{where}.chart", "is required", "name the chart's folder (the one holding Chart.yaml)")
    chart = _chart(c, raw["chart"], f"{where}.chart", source)
    release = raw.get("release", service_name)
    c.string(release, f"{where}.release")
    if len(release) > RELEASE_MAX or not RELEASE_RE.match(release):
        c.fail(
            f"{where}.release",
            f"{show(release)} is not a Helm release name",
            f"use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, "
            f"at most {RELEASE_MAX} characters",
        )
    values = c.files(raw.get("values", []), f"{where}.values", source, what="values files")
    return Helm(chart, release, values, _set_values(c, raw.get("set"), f"{where}.set"))


def _chart(c: Checker, value, field_name, source) -> Path:
    """A chart folder on disk: kindling renders offline, so a chart in a repository or an OCI
    registry is refused with how to vendor it."""
    text = c.string(value, field_name)
    vendor = f"vendor it once (`helm pull {text} --untar --untardir charts`) and point chart at that folder"
    if re.match(r"^(oci|https?)://", text):
        c.fail(
            field_name,
            f"{show(text)} is a remote chart; kindling renders local charts only "
            "(no repository pulls: no network)",
            vendor,
        )
    chart = c.path_value(text, field_name, c.path.parent, source)
    missing = c.check_files and not chart.is_dir()
    if missing and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) and not chart.exists():
        c.fail(
            field_name,
            f"folder {chart} does not exist; if {show(text)} names a chart in a Helm "
            "repository: kindling renders local charts only (no repository pulls: no network)",
            f"correct the path (relative paths start at the stack file's folder), or {vendor}",
        )
    if missing and chart.is_file():
        c.fail(
            field_name,
            f"{chart} is a file; kindling renders chart folders",
            f"unpack it (`tar -xzf {chart.name}`) and point chart at the folder holding Chart.yaml",
        )
    c.existing(chart, field_name, "folder")
    if c.check_files and not (chart / "Chart.yaml").is_file():
        c.fail(
            field_name,
            f"folder {chart} holds no Chart.yaml, so it is not a Helm chart",
            "point chart at the chart's own folder (the one holding Chart.yaml), or make one: helm create",
        )
    return chart


def _set_values(c: Checker, raw, field_name) -> dict:
    """`set: {KEY: VALUE}`: keys in helm's --set syntax (a.b, list[0].name), scalar values; string
    values expand ${VAR} and ${VAR:-default} like build args."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        c.fail(
            field_name,
            f"must be a mapping of KEY: value, got {type_name(raw)}",
            "write e.g. `set: {image.tag: dev, replicaCount: 2}`",
        )
    result = {}
    for key, value in raw.items():
        where = f"{field_name}.{key}"
        if not isinstance(key, str) or not key.strip() or "=" in key or "," in key:
            c.fail(
                where,
                "is not a Helm value key",
                "write the key as helm's --set does: a.b for nesting, list[0] for an item, "
                "'\\.' for a dot inside a name; no '=' or ','",
            )
        if isinstance(value, (dict, list)) or value is None:
            c.fail(
                where,
                f"must be a string, number or boolean, got {type_name(value)}",
                "put lists, mappings and nulls in a values file (helm.values)",
            )
        if isinstance(value, float) and not math.isfinite(value):
            c.fail(where, f"{show(value)} is not a number Helm can take", "write a finite number")
        result[key] = expand_env(value, c.env) if isinstance(value, str) else value
    return result
