#!/usr/bin/env bash
# The test environment: real kind, kubeadm, etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, crictl and helm, built from the Go modules pinned in
# tests/testenv/*/go.mod, and a kind node image assembled locally (no pull): a Debian
# rootfs made with debootstrap (containerd, ctr, runc), those binaries, and the simulated
# kubelet (tests/testenv/kubernetes/kubelet).
#
#   scripts/testenv.sh build    build what is missing (cold: tens of minutes on 2 cores)
#   scripts/testenv.sh env      print the exports: eval "$(scripts/testenv.sh env)"
#   scripts/testenv.sh check    exit 0 if everything is built, else say what is missing
#   scripts/testenv.sh clean    remove the cache folder and the node images
#
# Settings (environment):
#   KINDLING_TESTENV_CACHE  cache folder, outside the repository
#                           (default ${XDG_CACHE_HOME:-~/.cache}/kindling-testenv);
#                           everything in it is keyed by the pinned versions and sources
#   DEBIAN_MIRROR           mirror for debootstrap (default: the first deb.debian.org-style
#                           URI in the host's apt sources, else http://deb.debian.org/debian)
#   GOFLAGS, GOPROXY, ...   passed to go as usual
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TESTENV=$ROOT/tests/testenv
CACHE=${KINDLING_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kindling-testenv}
KUBERNETES_VERSION=v1.36.3         # must match tests/testenv/kubernetes/go.mod
DEBIAN_SUITE=bookworm
NODE_PACKAGES=containerd,runc,procps,iproute2,tini
MODULES=(kubernetes kind etcd crictl helm)

say() { echo "testenv: $*" >&2; }
die() { say "$*"; exit 1; }

key_of() {  # a short digest of files' names and contents
  (cd "$TESTENV" && for f in "$@"; do echo "$f"; cat "$f"; done) | sha256sum | cut -c1-12
}

module_dir() { echo "$CACHE/tools/$1-$(key_of "$1/go.mod" "$1/go.sum")"; }

kubelet_dir() {
  local sources
  sources=$(cd "$TESTENV" && ls kubernetes/go.mod kubernetes/go.sum kubernetes/kubelet/*.go)
  # shellcheck disable=SC2086
  echo "$CACHE/tools/kubelet-$(key_of $sources)"
}

base_image() {
  echo "localhost/kindling-testenv/node-base:${DEBIAN_SUITE}-$(echo "$NODE_PACKAGES" | sha256sum | cut -c1-8)"
}

node_image() {
  local node_files
  node_files=$(cd "$TESTENV" && find node -type f | sort)
  local key
  # shellcheck disable=SC2086
  key=$( (key_of $node_files; base_image; for m in "${MODULES[@]}"; do module_dir "$m"; done; kubelet_dir) \
    | sha256sum | cut -c1-12)
  echo "localhost/kindling-testenv/node:${KUBERNETES_VERSION}-${key}"
}

containers_conf() {
  # Podman settings these machines need (hybrid cgroup v1: runc, not crun; no default
  # ulimits for privileged containers; a log driver `podman logs -f` can follow, which
  # kind's node start waits on). Test set-up only: the product forces none of it.
  local conf=$CACHE/containers.conf
  mkdir -p "$CACHE"
  if [[ ! -f $conf ]]; then
    printf '[containers]\ndefault_ulimits = []\nlog_driver = "k8s-file"\n[engine]\nruntime = "runc"\n' >"$conf"
  fi
  echo "$conf"
}

image_exists() { podman image exists "$1"; }

go_ldflags() {
  local module=$1
  local flags="-s -w"
  if [[ $module == kubernetes ]]; then
    # The version the binaries report (`kubectl version`, kubeadm's skew checks).
    local v=${KUBERNETES_VERSION#v}
    flags+=" -X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION}"
    flags+=" -X k8s.io/component-base/version.gitMajor=${v%%.*}"
    flags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$v" | cut -d. -f2)"
    flags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    flags+=" -X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION}"
  fi
  echo "$flags"
}

build_module() {
  local module=$1 out
  out=$(module_dir "$module")
  [[ -f $out/.done ]] && return 0
  say "building $module (go build; cold builds take minutes)"
  local packages
  packages=$(grep -o '_ "[^"]*"' "$TESTENV/$module/tools.go" | cut -d'"' -f2)
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  local start=$SECONDS
  # shellcheck disable=SC2086
  (cd "$TESTENV/$module" && CGO_ENABLED=0 go build -trimpath -ldflags "$(go_ldflags "$module")" \
    -o "$out.tmp/" $packages)
  # go names a /vN module's command after the element before vN: etcd's is "server".
  if [[ $module == etcd ]]; then mv "$out.tmp/server" "$out.tmp/etcd"; fi
  touch "$out.tmp/.done"
  rm -rf "$out" && mv "$out.tmp" "$out"
  say "built $module in $((SECONDS - start)) s: $(ls "$out" | tr '\n' ' ')"
}

build_kubelet() {
  local out
  out=$(kubelet_dir)
  [[ -x $out/kubelet ]] && return 0
  say "building the simulated kubelet"
  mkdir -p "$out"
  (cd "$TESTENV/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/kubelet.tmp" ./kubelet)
  mv "$out/kubelet.tmp" "$out/kubelet"
}

debian_mirror() {
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -v security | grep -oE 'https?://[^ ]+' | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
  local tag
  tag=$(base_image)
  image_exists "$tag" && return 0
  command -v debootstrap >/dev/null || die "debootstrap is needed (apt-get install debootstrap)"
  say "making the node's Debian rootfs with debootstrap ($DEBIAN_SUITE: $NODE_PACKAGES)"
  local rootfs
  rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  local start=$SECONDS
  debootstrap --variant=minbase --include="$NODE_PACKAGES" "$DEBIAN_SUITE" "$rootfs" "$(debian_mirror)" \
    >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed: see $CACHE/debootstrap.log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import -q - "$tag" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  say "node base image $tag in $((SECONDS - start)) s"
}

build_node() {
  local tag
  tag=$(node_image)
  image_exists "$tag" && return 0
  local context
  context=$(mktemp -d "$CACHE/node-context.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  mkdir -p "$context/bin"
  for module in "${MODULES[@]}"; do
    [[ $module == helm ]] && continue   # helm runs on the host, not in the node
    [[ $module == kind ]] && continue
    cp "$(module_dir "$module")"/* "$context/bin/"
  done
  cp "$(kubelet_dir)/kubelet" "$context/bin/"
  cp -r "$TESTENV/node/files" "$TESTENV/node/Containerfile" "$context/"
  echo "$KUBERNETES_VERSION" >"$context/files/kind/version"
  podman build -q --build-arg "BASE=$(base_image)" -t "$tag" "$context" >/dev/null
  rm -rf "$context"
  trap - EXIT
  say "node image $tag"
}

busybox_image() { echo "localhost/kindling-testenv/busybox:$(busybox_version)"; }
busybox_version() { dpkg-query -W -f '${Version}' busybox-static 2>/dev/null | tr -c 'A-Za-z0-9_.\n-' '_'; }

build_busybox() {
  # A base for test and demo images (demo.yaml's BASE_IMAGE): no registry can be pulled from.
  local tag
  tag=$(busybox_image)
  image_exists "$tag" && return 0
  command -v busybox >/dev/null || die "busybox is needed (apt-get install busybox-static)"
  local context
  context=$(mktemp -d "$CACHE/busybox.XXXXXX")
  cp "$(command -v busybox)" "$context/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "sh"]\n' >"$context/Containerfile"
  podman build -q -t "$tag" "$context" >/dev/null
  rm -rf "$context"
}

registry_image() {
  local version
  version=$(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null | tr -c 'A-Za-z0-9_.\n-' '_')
  echo "localhost/kindling-testenv/registry:${version:-none}"
}

build_registry() {
  # The registry container of kind's local-registry guide (`registry:2`/`registry:3`), made
  # from Debian's docker-registry (the CNCF distribution registry) on the node's Debian base.
  local tag
  tag=$(registry_image)
  image_exists "$tag" && return 0
  command -v docker-registry >/dev/null || die "docker-registry is needed (apt-get install docker-registry)"
  local context
  context=$(mktemp -d "$CACHE/registry.XXXXXX")
  cp "$(command -v docker-registry)" "$context/registry"
  printf 'version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem: {rootdirectory: /var/lib/registry}\n  delete: {enabled: true}\nhttp:\n  addr: :5000\n' \
    >"$context/config.yml"
  printf 'FROM %s\nCOPY registry /usr/bin/registry\nCOPY config.yml /etc/docker/registry/config.yml\nEXPOSE 5000\nENTRYPOINT ["/usr/bin/registry", "serve", "/etc/docker/registry/config.yml"]\n' \
    "$(base_image)" >"$context/Containerfile"
  podman build -q -t "$tag" "$context" >/dev/null
  rm -rf "$context"
}

host_setup() {
  # kind's podman provider mounts /lib/modules read-only into every node
  # (pkg/cluster/internal/providers/podman/provision.go); podman refuses a missing source.
  if [[ ! -d /lib/modules ]]; then
    if [[ $(id -u) == 0 ]]; then mkdir -p /lib/modules; else
      die "/lib/modules is missing and kind mounts it into every node: sudo mkdir -p /lib/modules"
    fi
  fi
}

bin_path() {
  local dirs=()
  for module in "${MODULES[@]}"; do dirs+=("$(module_dir "$module")"); done
  (IFS=:; echo "${dirs[*]}")
}

missing() {
  local what=()
  for module in "${MODULES[@]}"; do [[ -f $(module_dir "$module")/.done ]] || what+=("$module"); done
  [[ -x $(kubelet_dir)/kubelet ]] || what+=(kubelet)
  command -v podman >/dev/null || what+=(podman)
  if command -v podman >/dev/null; then
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$(containers_conf)}
    image_exists "$(node_image)" || what+=("node image")
    image_exists "$(busybox_image)" || what+=("busybox image")
    image_exists "$(registry_image)" || what+=("registry image")
  fi
  [[ -d /lib/modules ]] || what+=(/lib/modules)
  echo "${what[*]}"
}

case "${1:-}" in
  build)
    command -v go >/dev/null || die "go is needed (Go 1.26: see README, Tests)"
    command -v podman >/dev/null || die "podman is needed (apt-get install podman runc)"
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$(containers_conf)}
    mkdir -p "$CACHE/tools"
    host_setup
    start=$SECONDS
    for module in "${MODULES[@]}"; do build_module "$module"; done
    build_kubelet
    build_base
    build_node
    build_busybox
    build_registry
    say "ready in $((SECONDS - start)) s: eval \"\$(scripts/testenv.sh env)\""
    ;;
  env)
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$(containers_conf)}
    gaps=$(missing)
    [[ -z $gaps ]] || die "not built: $gaps (run scripts/testenv.sh build)"
    echo "export PATH=\"$(bin_path):\$PATH\""
    echo "export KINDLING_NODE_IMAGE=\"$(node_image)\""
    echo "export CONTAINERS_CONF=\"${CONTAINERS_CONF}\""
    echo "export KINDLING_TESTENV=\"$CACHE\""
    echo "export BASE_IMAGE=\"$(busybox_image)\""
    echo "export KINDLING_KIND_REGISTRY_IMAGE=\"$(registry_image)\""
    ;;
  check)
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$(containers_conf)}
    gaps=$(missing)
    [[ -z $gaps ]] || die "not built: $gaps (run scripts/testenv.sh build)"
    ;;
  clean)
    podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/kindling-testenv/' \
      | xargs -r podman rmi >/dev/null || true
    rm -rf "$CACHE"
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
