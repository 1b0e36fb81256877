#!/usr/bin/env bash
# The test environment: real kind, kubeadm, etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl, crictl, helm, CoreDNS and rancher's
# local-path-provisioner, built from the Go modules pinned in tests/testenv/*/go.mod, and a
# kind node image assembled locally (no pull): a Debian rootfs made with debootstrap
# (containerd, runc, iptables, the CNI plugins), those binaries, and the images a node runs
# (control plane, pause, kube-proxy, CoreDNS, the CNI daemon, the storage provisioner)
# preloaded under /kind/images as kind's own node image does.
#
# The host: a real kubelet writes host-wide sysctls from inside a privileged node
# (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1, ...: its
# protectKernelDefaults=false path, pkg/kubelet/cm/container_manager_linux.go setupKernelTunables),
# as on any kind cluster. This node's entrypoint binds files with the kubelet's values over them,
# so the kubelet writes nothing and the host keeps its own.
#
#   scripts/testenv.sh build    build what is missing (cold: tens of minutes on 2 cores)
#   scripts/testenv.sh build --peers
#                               also the tools bench.peers measures kindling against (Skaffold:
#                               about 5 more minutes); outside the default build, which CI runs
#   scripts/testenv.sh build --kubernaut
#                               also stand-ins for the images Kubernaut's stacks build FROM or run,
#                               nothing pulled (tests/testenv/kubernaut/: a Debian rootfs with
#                               PostgreSQL 15, Redis 7.0, git, ...; the host's Go): ubi-minimal:10,
#                               go-toolset:1.26 (and :10.2), postgres:16, redis:7 under
#                               localhost/kindling-testenv/ (cold: about a minute, mostly
#                               debootstrap); outside the default build. Once they are built, env
#                               also prints KINDLING_KUBERNAUT_STANDINS="REPOSITORY=STAND-IN,...",
#                               the form of KINDLING_BASE_IMAGES:
#                               KINDLING_BASE_IMAGES=$KINDLING_KUBERNAUT_STANDINS invoke e2e.setup
#                               (postgres and redis stand in for services' `image:`s, which
#                               base_images does not map: podman tag them as those names)
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
# iptables and the CNI plugins for pod networking (portmap, kube-proxy's image); conntrack for
# kube-proxy's UDP clean-up.
NODE_PACKAGES=containerd,runc,procps,iproute2,tini,iptables,conntrack,containernetworking-plugins
MODULES=(kubernetes kind etcd crictl helm coredns localpath)
PEER_MODULES=(skaffold)  # built on --peers only: bench.peers, not the tests, needs them
# Built on --kubernaut only: the Debian packages of its stand-in images' base, and each stand-in:
# NAME (tests/testenv/kubernaut/NAME.Containerfile), the repository it stands in for, its tags.
KUBERNAUT_PACKAGES=ca-certificates,tzdata,git,postgresql-15,postgresql-client-15,redis-server,passwd,util-linux
KUBERNAUT_STANDINS=(
  "ubi-minimal registry.access.redhat.com/ubi10/ubi-minimal localhost/kindling-testenv/ubi-minimal:10"
  "go-toolset registry.access.redhat.com/ubi10/go-toolset localhost/kindling-testenv/go-toolset:1.26
    localhost/kindling-testenv/go-toolset:10.2"
  "postgres docker.io/library/postgres localhost/kindling-testenv/postgres:16"
  "redis quay.io/jordigilh/redis localhost/kindling-testenv/redis:7"
)
KEY_LABEL=io.kindling.testenv.key  # a fixed-tag image's content key (stand-ins)
# Images of the node's add-ons, named after the test environment (kind's own names would
# claim to be kind's images). The node image's key covers what they are made of.
CNI_IMAGE=localhost/kindling-testenv/cni-daemon:1
LOCAL_PATH_IMAGE=localhost/kindling-testenv/local-path-provisioner:$(grep -o 'local-path-provisioner v[^ ]*' \
  "$TESTENV/localpath/go.mod" 2>/dev/null | cut -d' ' -f2)
LOCAL_PATH_HELPER_IMAGE=localhost/kindling-testenv/local-path-helper:1

say() { echo "testenv: $*" >&2; }
die() { say "$*"; exit 1; }

key_of() {  # a short digest of files' names and contents
  (cd "$TESTENV" && for f in "$@"; do echo "$f"; cat "$f"; done) | sha256sum | cut -c1-12
}

module_dir() { echo "$CACHE/tools/$1-$(key_of "$1/go.mod" "$1/go.sum")"; }

base_image() {
  echo "localhost/kindling-testenv/node-base:${DEBIAN_SUITE}-$(echo "$NODE_PACKAGES" | sha256sum | cut -c1-8)"
}

node_image() {
  local node_files
  node_files=$(cd "$TESTENV" && find node -type f | sort)
  local key
  # shellcheck disable=SC2086
  key=$( (key_of $node_files; base_image; busybox_image; for m in "${MODULES[@]}"; do module_dir "$m"; done) \
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
  if [[ $module == localpath ]]; then  # as its scripts/build does
    flags+=" -X main.VERSION=${LOCAL_PATH_IMAGE##*:}"
  fi
  if [[ $module == skaffold ]]; then  # as its Makefile does: `skaffold version` reports it
    flags+=" -X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$(grep -o \
      'skaffold/v2 v[^ ]*' "$TESTENV/skaffold/go.mod" | cut -d' ' -f2)"
  fi
  echo "$flags"
}

build_module() {
  local module=$1 out
  out=$(module_dir "$module")
  [[ -f $out/.done ]] && return 0
  say "building $module (go build; cold builds take minutes)"
  local packages=.  # a module with its own main package (coredns) has no tools.go
  if [[ -f $TESTENV/$module/tools.go ]]; then
    packages=$(grep -o '_ "[^"]*"' "$TESTENV/$module/tools.go" | cut -d'"' -f2)
  fi
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  local start=$SECONDS
  # shellcheck disable=SC2086
  (cd "$TESTENV/$module" && CGO_ENABLED=0 go build -trimpath -ldflags "$(go_ldflags "$module")" \
    -o "$out.tmp/" $packages)
  # go names a /vN module's command after the element before vN: etcd's is "server".
  if [[ $module == etcd ]]; then mv "$out.tmp/server" "$out.tmp/etcd"; fi
  if [[ $module == kubernetes ]]; then build_pause "$out.tmp"; fi
  touch "$out.tmp/.done"
  rm -rf "$out" && mv "$out.tmp" "$out"
  say "built $module in $((SECONDS - start)) s: $(ls "$out" | tr '\n' ' ')"
}

build_pause() {
  # The pause image's binary, from the kubernetes module's own source (build/pause/linux/pause.c),
  # linked statically as the upstream image is.
  local out=$1 src
  src="$(cd "$TESTENV/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  command -v gcc >/dev/null || die "gcc is needed for the pause image (apt-get install gcc libc6-dev)"
  gcc -Os -Wall -Werror -static -DVERSION=v3.10.2-kindling -o "$out/pause" "$src"
}

debian_mirror() {
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -v security | grep -oE 'https?://[^ ]+' | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

build_base() { debootstrap_image "$(base_image)" "$NODE_PACKAGES" node "$CACHE/debootstrap.log"; }

debootstrap_image() {  # TAG PACKAGES WHAT LOG [PATH...]: a Debian rootfs with PACKAGES, less PATHs, as TAG
  local tag=$1 packages=$2 what=$3 log=$4; shift 4
  image_exists "$tag" && return 0
  command -v debootstrap >/dev/null || die "debootstrap is needed (apt-get install debootstrap)"
  say "making the $what Debian rootfs with debootstrap ($DEBIAN_SUITE: $packages)"
  local rootfs
  rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  local start=$SECONDS
  debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$rootfs" "$(debian_mirror)" \
    >"$log" 2>&1 || die "debootstrap failed: see $log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  local path
  for path in "$@"; do rm -rf "${rootfs:?}/$path"; done
  tar -C "$rootfs" -c . | podman import -q - "$tag" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  say "$what base image $tag in $((SECONDS - start)) s"
}

save_image() {  # ARCHIVE CONTEXT TAG... : build CONTEXT under the tags, save them in one archive
  local archive=$1 context=$2; shift 2
  local tags=() tag
  for tag in "$@"; do tags+=(-t "$tag"); done
  podman build -q "${tags[@]}" "$context" >/dev/null
  podman save -q -m -o "$archive" "$@" >/dev/null
  podman rmi "$@" >/dev/null 2>&1 || true  # the archive holds them now
}

scratch_image() {  # BINARY... : a context for a FROM scratch image with the binaries in /usr/local/bin
  local context
  context=$(mktemp -d "$CACHE/image.XXXXXX")
  mkdir -p "$context/bin"
  local binary entry=""
  for binary in "$@"; do
    cp "$binary" "$context/bin/"
    [[ -n $entry ]] || entry=/usr/local/bin/$(basename "$binary")
  done
  printf 'FROM scratch\nCOPY bin/ /usr/local/bin/\nENV PATH=/usr/local/bin:/usr/bin:/bin\nENTRYPOINT ["%s"]\n' \
    "$entry" >"$context/Containerfile"
  echo "$context"
}

node_images() {
  # The images a node runs, as kind's node image preloads them
  # (kind pkg/build/nodeimage/buildcontext.go prePullImagesAndWriteManifests): kubeadm's own
  # list for this version, then the CNI daemon, the storage provisioner and its helper.
  local folder=$1 k8s kubeadm_list
  k8s=$(module_dir kubernetes)
  kubeadm_list=$("$k8s/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION")
  local ref context
  for ref in $kubeadm_list; do
    local name=${ref##*/}; name=${name%%:*}
    case $name in
      kube-apiserver|kube-controller-manager|kube-scheduler)
        context=$(scratch_image "$k8s/$name")
        save_image "$folder/$name.tar" "$context" "$ref" ;;
      etcd)
        context=$(scratch_image "$(module_dir etcd)/etcd")
        save_image "$folder/etcd.tar" "$context" "$ref" ;;
      pause)
        # kubeadm's tag, and containerd's sandbox_image (etc/containerd/config.toml).
        context=$(scratch_image "$k8s/pause")
        save_image "$folder/pause.tar" "$context" "$ref" "registry.k8s.io/pause:3.10" ;;
      coredns)
        local built
        built=$("$(module_dir coredns)/coredns" -version | grep -o 'CoreDNS-[0-9.]*' | cut -d- -f2)
        [[ ${ref##*:} == "v$built" ]] || die "kubeadm $KUBERNETES_VERSION wants $ref, tests/testenv/coredns builds $built"
        context=$(mktemp -d "$CACHE/image.XXXXXX")
        cp "$(module_dir coredns)/coredns" "$context/coredns"
        printf 'FROM scratch\nCOPY coredns /coredns\nENTRYPOINT ["/coredns"]\n' >"$context/Containerfile"
        save_image "$folder/coredns.tar" "$context" "$ref" ;;
      kube-proxy)
        # kube-proxy runs iptables-restore and conntrack: Debian's, on the node's own base.
        context=$(mktemp -d "$CACHE/image.XXXXXX")
        cp "$k8s/kube-proxy" "$TESTENV/node/kube-proxy/iptables-wrapper" "$context/"
        printf '%s\n' "FROM $(base_image)" 'COPY kube-proxy /usr/local/bin/kube-proxy' \
          'COPY iptables-wrapper /usr/sbin/iptables-wrapper' \
          'RUN for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do ln -sf /usr/sbin/iptables-wrapper /usr/sbin/$c; done' \
          >"$context/Containerfile"
        save_image "$folder/kube-proxy.tar" "$context" "$ref" ;;
      *) die "kubeadm lists an image the test node cannot make: $ref" ;;
    esac
    rm -rf "$context"
  done
  context=$(mktemp -d "$CACHE/image.XXXXXX")
  cp "$(command -v busybox)" "$k8s/kubectl" "$TESTENV/node/cni/cni-daemon" "$context/"
  printf '%s\n' 'FROM scratch' 'COPY busybox /bin/busybox' \
    'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir -p /tmp"]' \
    'COPY kubectl cni-daemon /usr/local/bin/' 'ENV PATH=/usr/local/bin:/bin' \
    'ENTRYPOINT ["/usr/local/bin/cni-daemon"]' >"$context/Containerfile"
  save_image "$folder/cni-daemon.tar" "$context" "$CNI_IMAGE"
  rm -rf "$context"
  context=$(scratch_image "$(module_dir localpath)/local-path-provisioner")
  save_image "$folder/local-path-provisioner.tar" "$context" "$LOCAL_PATH_IMAGE"
  rm -rf "$context"
  # The provisioner's helper pod runs `sh -c` scripts (kind's local-path-helper is busybox too).
  context=$(mktemp -d "$CACHE/image.XXXXXX")
  cp "$(command -v busybox)" "$context/busybox"
  printf '%s\n' 'FROM scratch' 'COPY busybox /bin/busybox' 'RUN ["/bin/busybox", "--install", "-s", "/bin"]' \
    'ENV PATH=/bin' >"$context/Containerfile"
  save_image "$folder/local-path-helper.tar" "$context" "$LOCAL_PATH_HELPER_IMAGE"
  rm -rf "$context"
}

build_node() {
  local tag
  tag=$(node_image)
  image_exists "$tag" && return 0
  local context
  context=$(mktemp -d "$CACHE/node-context.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  local start=$SECONDS
  mkdir -p "$context/bin" "$context/images"
  for module in "${MODULES[@]}"; do
    case $module in
      kubernetes) cp "$(module_dir kubernetes)"/{kubeadm,kubectl,kubelet} "$context/bin/" ;;
      crictl) cp "$(module_dir crictl)"/* "$context/bin/" ;;
      *) ;;  # the rest runs in images (below) or on the host (kind, helm)
    esac
  done
  node_images "$context/images"
  cp -r "$TESTENV/node/files" "$TESTENV/node/Containerfile" "$context/"
  echo "$KUBERNETES_VERSION" >"$context/files/kind/version"
  sed -i -e "s|@CNI_IMAGE@|$CNI_IMAGE|" "$context/files/kind/manifests/default-cni.yaml"
  sed -i -e "s|@LOCAL_PATH_IMAGE@|$LOCAL_PATH_IMAGE|" -e "s|@LOCAL_PATH_HELPER_IMAGE@|$LOCAL_PATH_HELPER_IMAGE|" \
    "$context/files/kind/manifests/default-storage.yaml"
  podman build -q --build-arg "BASE=$(base_image)" -t "$tag" "$context" >/dev/null
  rm -rf "$context"
  trap - EXIT
  say "node image $tag in $((SECONDS - start)) s"
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

kubernaut_base_image() {
  echo "localhost/kindling-testenv/kubernaut-base:${DEBIAN_SUITE}-$(echo "$KUBERNAUT_PACKAGES" | sha256sum | cut -c1-8)"
}

build_kubernaut_base() {
  # Less a "main" cluster, should postgresql-15's postinst make one (Debian's pg_createcluster):
  # the postgres stand-in keeps its data in PGDATA.
  debootstrap_image "$(kubernaut_base_image)" "$KUBERNAUT_PACKAGES" Kubernaut \
    "$CACHE/debootstrap-kubernaut.log" etc/postgresql/15/main var/lib/postgresql/15/main
}

standin_key() {  # NAME: a digest of the stand-in's files, its base and (go-toolset) the host's Go
  local name=$1
  local files=("kubernaut/$name.Containerfile")
  case $name in
    ubi-minimal|go-toolset) files+=(kubernaut/dnf) ;;
    postgres|redis) files+=("kubernaut/$name-entrypoint.sh") ;;
    *) die "no stand-in $name" ;;
  esac
  (key_of "${files[@]}"; kubernaut_base_image
   if [[ $name == go-toolset ]]; then go version; go env GOROOT GOPROXY GOSUMDB; host_ca_bundle | xargs -r cat; fi) \
    | sha256sum | cut -c1-12
}

host_ca_bundle() {  # the CA bundle the host's go trusts (a TLS-inspecting proxy's CA may be in it)
  local bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
  if [[ -f $bundle ]]; then echo "$bundle"; fi
}

standin_current() {  # NAME TAG...: every tag is an image built from the stand-in's current key
  local key tag
  key=$(standin_key "$1"); shift
  for tag in "$@"; do
    [[ $(podman image inspect --format "{{index .Labels \"$KEY_LABEL\"}}" "$tag" 2>/dev/null) == "$key" ]] \
      || return 1
  done
}

build_standin() {  # NAME TAG...: tests/testenv/kubernaut/NAME.Containerfile on the Kubernaut base
  local name=$1; shift
  standin_current "$name" "$@" && return 0
  local tags=() tag extra=() old log=$CACHE/kubernaut-$name.log start=$SECONDS
  for tag in "$@"; do tags+=(-t "$tag"); done
  if [[ $name == go-toolset ]]; then
    extra=(--volume "$(go env GOROOT):/mnt/goroot:ro"
      --build-arg "GOPROXY=$(go env GOPROXY)" --build-arg "GOSUMDB=$(go env GOSUMDB)")
    if [[ -n $(host_ca_bundle) ]]; then extra+=(--volume "$(host_ca_bundle):/mnt/host-ca.crt:ro"); fi
  fi
  old=$(podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true)
  # --no-cache: the key decides when to build, and a cached RUN would not see a new GOROOT.
  podman build --no-cache --build-arg "BASE=$(kubernaut_base_image)" --label "$KEY_LABEL=$(standin_key "$name")" \
    "${tags[@]}" "${extra[@]}" -f "$TESTENV/kubernaut/$name.Containerfile" "$TESTENV/kubernaut" >"$log" 2>&1 \
    || die "the $name stand-in failed: see $log"
  [[ -z $old ]] || podman rmi "$old" >/dev/null 2>&1 || true  # the stale one, unless still in use
  say "stand-in $* in $((SECONDS - start)) s"
}

build_kubernaut() {
  build_kubernaut_base
  local entry name upstream tags
  for entry in "${KUBERNAUT_STANDINS[@]}"; do
    read -r name upstream tags <<<"${entry//$'\n'/ }"
    # shellcheck disable=SC2086
    build_standin "$name" $tags
  done
}

kubernaut_standins() {  # REPOSITORY=STAND-IN,... when every stand-in is built, else nothing
  local entry name upstream tags pairs=()
  for entry in "${KUBERNAUT_STANDINS[@]}"; do
    read -r name upstream tags <<<"${entry//$'\n'/ }"
    # shellcheck disable=SC2086
    standin_current "$name" $tags || return 0
    pairs+=("$upstream=${tags%% *}")
  done
  (IFS=,; echo "${pairs[*]}")
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
  for module in "${PEER_MODULES[@]}"; do  # when built
    [[ -f $(module_dir "$module")/.done ]] && dirs+=("$(module_dir "$module")")
  done
  (IFS=:; echo "${dirs[*]}")
}

missing() {
  local what=()
  for module in "${MODULES[@]}"; do [[ -f $(module_dir "$module")/.done ]] || what+=("$module"); done
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
    peers=no kubernaut=no
    for option in "${@:2}"; do
      case $option in
        --peers) peers=yes ;;
        --kubernaut) kubernaut=yes ;;
        *) die "unknown option $option: build takes --peers, --kubernaut or nothing" ;;
      esac
    done
    mkdir -p "$CACHE/tools"
    host_setup
    start=$SECONDS
    for module in "${MODULES[@]}"; do build_module "$module"; done
    if [[ $peers == yes ]]; then
      for module in "${PEER_MODULES[@]}"; do build_module "$module"; done
    fi
    build_base
    build_node
    build_busybox
    build_registry
    if [[ $kubernaut == yes ]]; then build_kubernaut; fi
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
    standins=$(kubernaut_standins)
    if [[ -n $standins ]]; then echo "export KINDLING_KUBERNAUT_STANDINS=\"$standins\""; fi
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
    sed -n '/^#   scripts\/testenv.sh build /,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
