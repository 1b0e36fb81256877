#!/usr/bin/env bash
# The rehearsal of the default stack on Kubernaut's own code: e2e.yaml with a Kubernaut checkout,
# its Dockerfiles built for real (Go compiled in them, the four builds sharing one Go cache), on the
# test environment's kind node, with the stand-in base and database images of
# `scripts/testenv.sh build --kubernaut` (no registry can be pulled from here).
#
#   scripts/rehearse-kubernaut.sh CHECKOUT [--keep] [--coverage]
#
# 1. The checkout is copied into the rehearsal folder: the edit below never touches it.
# 2. e2e.setup with E2E_PROFILE=offline (e2e.yaml's profile for a machine with no registry) and
#    the stand-ins as base images (KINDLING_BASE_IMAGES).
# 3. e2e.test: the stack's suite (scripts/kubernaut/suite.py).
# 4. A one-line edit under internal/controller/aianalysis, deploy.aianalysis, e2e.test again.
# 5. e2e.teardown --keep-images (images and caches stay, so the next rehearsal is warm), unless
#    --keep keeps the cluster too.
# --coverage runs it in coverage mode: Data Storage and the controller built with -cover, their
# counters under the run folder (e2e.test prints the covdata command). A suite in coverage mode
# ends by scaling the instrumented workloads to zero (Go writes its counters on exit), so after the
# edit e2e.setup, not deploy.aianalysis, brings the stack back: it rebuilds aianalysis alone and
# scales the others up again.
# Each step's wall time is printed at the end. Settings: KINDLING_REHEARSAL_DIR (default
# ${XDG_CACHE_HOME:-~/.cache}/kindling-rehearsal) holds the copy and kindling's state folder.
set -euo pipefail

die() { echo "rehearse-kubernaut: $*" >&2; exit 1; }
[[ $# -ge 1 ]] || die "usage: $0 CHECKOUT [--keep] [--coverage]"
checkout=$(cd "$1" 2>/dev/null && pwd) || die "$1 is not a folder: give a Kubernaut checkout"
keep=0
for option in "${@:2}"; do
  case $option in
    --keep) keep=1 ;;
    --coverage) export E2E_COVERAGE=true ;;  # every task of the run, deploy.<service> too
    *) die "unknown option $option: use --keep or --coverage" ;;
  esac
done
grep -qx 'module github.com/jordigilh/kubernaut' "$checkout/go.mod" 2>/dev/null \
  || die "$checkout/go.mod is not Kubernaut's (module github.com/jordigilh/kubernaut)"

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=${KINDLING_REHEARSAL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kindling-rehearsal}
mkdir -p "$state"
declared=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["source"]["revision"])' e2e.yaml)
if current=$(git -C "$checkout" rev-parse HEAD 2>/dev/null) && [[ "$current" != "$declared" ]]; then
  echo "rehearse-kubernaut: note: the checkout is at $current, e2e.yaml was verified at $declared" >&2
fi

scripts/testenv.sh build --kubernaut
eval "$(scripts/testenv.sh env)"
export KIND_EXPERIMENTAL_PROVIDER=podman
[[ -n "${KINDLING_KUBERNAUT_STANDINS:-}" ]] || die "scripts/testenv.sh build --kubernaut left no stand-ins"

# The images the manifests run (the node would pull them), present locally under those names:
# the offline profile loads them into the cluster.
podman tag localhost/kindling-testenv/postgres:16 docker.io/library/postgres:16-alpine
podman tag localhost/kindling-testenv/redis:7 quay.io/jordigilh/redis:7-alpine
if ! podman image exists registry.k8s.io/pause:3.9; then
  context=$(mktemp -d "$state/pause.XXXXXX")
  cp "$(command -v pause)" "$context/pause"  # the test environment's own build of Kubernetes' pause
  printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$context/Containerfile"
  podman build -q -t registry.k8s.io/pause:3.9 "$context" >/dev/null
  rm -rf "$context"
fi

source_copy="$state/kubernaut"
rm -rf "$source_copy"
cp -a "$checkout/." "$source_copy/"
export E2E_SOURCE="$source_copy" E2E_PROFILE=offline KINDLING_HOME="$state/home"
export KINDLING_BASE_IMAGES="$KINDLING_KUBERNAUT_STANDINS"

times=()
step() {
  local name=$1 start
  shift
  start=$(date +%s%N)
  echo "== $name: $*"
  "$@"
  times+=("$(printf '%-28s %6d s' "$name" $((($(date +%s%N) - start) / 1000000000)))")
}
finish() {
  local code=$?
  if [[ $keep == 0 ]]; then python3 -m invoke e2e.teardown --keep-images >/dev/null 2>&1 || true; fi
  echo "== times"
  printf '%s\n' "${times[@]}"
  exit "$code"
}
trap finish EXIT

step "e2e.setup" python3 -m invoke e2e.setup
step "e2e.test" python3 -m invoke e2e.test
edited="$source_copy/internal/controller/aianalysis/phase_handlers.go"
printf '\n// rehearsal edit %s\n' "$(date +%s)" >>"$edited"
if [[ ${E2E_COVERAGE:-} == true ]]; then
  step "e2e.setup (edited)" python3 -m invoke e2e.setup
else
  step "deploy.aianalysis (edited)" python3 -m invoke deploy.aianalysis
fi
step "e2e.test (after the edit)" python3 -m invoke e2e.test
