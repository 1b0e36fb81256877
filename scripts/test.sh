#!/usr/bin/env bash
# The test command. On a fresh Debian machine it installs what the tests need (podman, runc,
# busybox-static, chromium, docker-registry, debootstrap, gcc and the Python packages), builds the
# test environment (scripts/testenv.sh build: real kind, kubeadm, control plane, kubelet,
# kube-proxy, CoreDNS, kubectl, crictl and helm from Go modules, and the kind node image;
# reused when already built), then runs pytest. ruff lints the Python first. Extra arguments
# go to pytest.
#
#   scripts/test.sh --fast   the pure lane only: no system package, no test environment, no test
#                            marked podman or testenv (tests/conftest.py marks them), one pytest
#                            worker per core (pytest-xdist); under a minute on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fast" ]; then
  shift
  python3 -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt
  python3 -m ruff check .
  exec python3 -m pytest -q -n auto -m "not podman and not testenv" "$@"
fi

missing=()
for package in podman runc busybox-static chromium docker-registry debootstrap gcc libc6-dev; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-test.txt
python3 -m ruff check .  # lint first (ruff.toml): a style slip fails in seconds, not after the suite
command -v go >/dev/null || { echo "test.sh: Go 1.26 is needed to build the test environment" >&2; exit 1; }
scripts/testenv.sh build
exec python3 -m pytest -q "$@"
