"""The `helm:` and `kustomize:` sections of a service in the stack file (pure apart from
reading files): local charts and kustomizations, checked before anything runs."""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .stackfile import Checker, expand_env, show, type_name

HELM_KEYS = {"chart", "release", "values", "set"}
# Helm's own rule for release names (helm.sh/helm/v3 pkg/chartutil/validate_name.go).
HELM_RELEASE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HELM_RELEASE_MAX = 53
# What kustomize looks for in a folder (sigs.k8s.io/kustomize/api konfig/general.go).
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


@dataclass(frozen=True)
class Helm:
    """A local chart rendered with `helm template RELEASE CHART`."""

    chart: Path  # the chart's folder (holds Chart.yaml)
    release: str
    values: tuple = ()  # values files, in the order helm merges them
    set_values: dict = field(default_factory=dict)  # key in helm's --set syntax -> scalar


def parse_helm(c: Checker, raw, where, service_name, source) -> Helm:
    """`helm: {chart: DIR, release: NAME, values: [FILE...], set: {KEY: VALUE}}`; a local chart only."""
    if isinstance(raw, str):
        raw = {"chart": raw}
    c.mapping(raw, where, HELM_KEYS)
    if raw.get("chart") is None:
        c.fail(f"{where}.chart", "is required", "name the chart's folder (the one holding Chart.yaml)")
    chart = _chart(c, raw["chart"], f"{where}.chart", source)
    release = raw.get("release", service_name)
    c.string(release, f"{where}.release")
    if len(release) > HELM_RELEASE_MAX or not HELM_RELEASE_RE.match(release):
        c.fail(
            f"{where}.release",
            f"{show(release)} is not a Helm release name",
            f"use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, "
            f"at most {HELM_RELEASE_MAX} characters",
        )
    values = c.files(raw.get("values", []), f"{where}.values", source, what="values files")
    return Helm(chart, release, values, _helm_set(c, raw.get("set"), f"{where}.set"))


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


def _helm_set(c: Checker, raw, field_name) -> dict:
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


def parse_kustomize(c: Checker, raw, where, source) -> Path:
    """`kustomize: DIR`, a folder holding a kustomization, rendered with `kubectl kustomize DIR`."""
    folder = c.existing(c.path_value(raw, where, c.path.parent, source), where, "folder")
    if c.check_files and not any((folder / name).is_file() for name in KUSTOMIZATION_FILES):
        c.fail(
            where,
            f"folder {folder} holds no {KUSTOMIZATION_FILES[0]}",
            f"point kustomize at a folder holding one of: {', '.join(KUSTOMIZATION_FILES)}",
        )
    return folder
