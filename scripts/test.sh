#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine (podman, runc,
# busybox-static, the Python packages), then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for package in podman runc busybox-static chromium docker-registry; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt
exec python3 -m pytest -q "$@"
