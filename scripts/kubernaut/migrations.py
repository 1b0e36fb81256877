"""Print a folder's goose migrations (*.sql) as ConfigMap data: {file name: SQL} as JSON (the kindling
`migrations` run step, whose ConfigMap the db-migrate Job mounts at /migrations).

Kubernaut's Helm chart builds the same ConfigMap from its copy of the migrations
(charts/kubernaut/templates/hooks/migration-job.yaml: .Files.Glob "migrations/*.sql"): the
folder's own .sql files, not its subfolders.

    migrations.py ${SOURCE_DIR}/migrations
"""

import argparse
import json
import re
import sys
from pathlib import Path

import kube

# What the API server takes: keys as IsConfigMapKey checks them, and at most 1 MiB of data
# (k8s.io/kubernetes pkg/apis/core/validation: ValidateConfigMap, MaxSecretSize).
KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_BYTES = 1024 * 1024


def migrations(folder: Path) -> dict:
    if not folder.is_dir():
        raise kube.StepError(f"{folder} is not a folder: give the checkout's migrations/ folder")
    files = sorted(p for p in folder.glob("*.sql") if p.is_file())
    if not files:
        raise kube.StepError(f"{folder} holds no .sql file")
    data = {}
    for path in files:
        if not KEY_RE.match(path.name):
            raise kube.StepError(
                f"{path.name} cannot be a ConfigMap key: rename it to letters, digits, '-', '_' and '.'"
            )
        data[path.name] = path.read_text(encoding="utf-8")
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    if size > MAX_BYTES:
        raise kube.StepError(f"{folder}: {size} bytes of migrations exceed a ConfigMap's {MAX_BYTES}")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the migrations folder (the checkout's migrations/)")
    folder = parser.parse_args().folder
    data = migrations(folder)
    print(f"{len(data)} migrations from {folder}", file=sys.stderr)
    json.dump(data, sys.stdout)


if __name__ == "__main__":
    kube.main(main)
