"""A registry on this host's loopback (`127.0.0.1:5000`, `localhost:5000`, `[::1]:5000`), pulled from
by the nodes of a Kind cluster kindling makes.

A node's loopback is its own (kind docs, "Local Registry": "localhost" resolves to a loopback IP,
which is network-namespace local), so the pull of `127.0.0.1:5000/p/s:t` fails with "connection
refused" in the node. As in kind's guide, containerd reads /etc/containerd/certs.d
(render.CONTAINERD_REGISTRY_PATCH) and each node gets a `hosts.toml` for the registry's host that sends
the pulls elsewhere: here, to an address of this host the node reaches.

Which address, asked in this order and the first that answers on the registry's port, from a node,
wins:
1. `host.containers.internal` (podman) / `host.docker.internal` (Docker Desktop) in the node's
   /etc/hosts, where the engine itself wrote the host's address: rootful podman writes the gateway of
   the container's bridge network, rootless podman the host's first non-loopback address, since its
   bridge lives in a namespace of its own; containers.conf's host_containers_internal_ip overrides
   both (containers/common libnetwork/etchosts/ip.go, GetHostContainersInternalIP). kind passes no
   --no-hosts, so podman manages the node's /etc/hosts (kind pkg/cluster/internal/providers/podman/
   provision.go). Seen with rootful podman 4.3.1 (netavark): `10.89.0.1 host.containers.internal`,
   the gateway of the container's network.
2. the gateway of the cluster's network (`network inspect`: podman's subnets[].gateway, docker's
   IPAM.Config[].Gateway): the host's own address on that bridge when the engine is rootful, which is
   what kind's node entrypoint uses to reach the host when host.docker.internal is missing
   (images/base/files/usr/local/bin/entrypoint, enable_network_magic);
3. the node's default route, the same gateway as the node sees it.

The limit: each is an address of the host other than 127.0.0.1, so a registry listening on
127.0.0.1 only (`-p 127.0.0.1:5000:5000`) cannot be reached from a node by any of them: with rootful
podman 4.3.1 a listener on 0.0.0.0 answered at the gateway and one on 127.0.0.1 refused. kindling
checks from a node (bash's /dev/tcp, as a node may have no curl) and refuses with the fix rather
than deploy pods that cannot pull. A host firewall dropping the bridge's traffic looks the same.
"""

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field

from .. import render
from ..errors import KindlingError
from .registryhost import split_host

# The names engines put in a container's /etc/hosts for the host, in the order they are tried.
HOST_NAMES = ("host.containers.internal", "host.docker.internal")
CERTS_D = "/etc/containerd/certs.d"
CONNECT_SECONDS = 5  # per address tried from the node

# Run in a node with bash -s. Arguments: the port, then the candidate addresses found outside the
# node (the network's gateways). Prints what it found, one fact a line, and stops at the first address
# that accepts a connection. `containerd config dump` prints the effective config, defaults included,
# so config_path is seen whether a patch or the node image set it.
PROBE_SCRIPT = r"""
port=$1; shift
paths=$(timeout 10 containerd config dump 2>/dev/null | grep -E '^[[:space:]]*config_path[[:space:]]*=')
echo "config_path $(printf '%s' "$paths" | tr -d ' \t' | tr '\n' ' ')"
candidates=()
for name in @HOST_NAMES@; do
  addr=; read -r addr _ < <(timeout 5 getent hosts "$name")
  if [ -n "$addr" ]; then echo "name $name $addr"; candidates+=("$addr"); fi
done
candidates+=("$@")
route=; if command -v ip >/dev/null; then read -r _ _ route _ < <(ip -4 route show default); fi
if [ -n "$route" ]; then echo "route $route"; candidates+=("$route"); fi
connect() {
  exec 3<>"/dev/tcp/$1/$2" || exit 1
  echo connected
  printf 'GET /v2/ HTTP/1.0\r\n\r\n' >&3
  head -c 300 <&3
}
export -f connect
seen=" "
for addr in "${candidates[@]}"; do
  case "$seen" in *" $addr "*) continue;; esac
  seen="$seen$addr "
  answer=$(timeout @SECONDS@ bash -c 'connect "$@"' connect "$addr" "$port" 2>&1 \
    | tr -d '\000' | tr '\r\n' '  ')
  echo "probe $addr $answer"
  case "$answer" in connected*) break;; esac
done
""".replace("@HOST_NAMES@", " ".join(HOST_NAMES)).replace("@SECONDS@", str(CONNECT_SECONDS))

# Run in a node with bash -s. Arguments: the registry host's spellings. Prints, for each, whether its
# hosts.toml is missing, kindling's (and its digest), or someone else's, e.g. kind's local-registry guide.
FILES_SCRIPT = f"""
for spelling in "$@"; do
  f="{CERTS_D}/$spelling/hosts.toml"
  if [ ! -e "$f" ]; then echo "file $spelling none"
  elif grep -q '^{render.HOSTS_TOML_MARK}' "$f"; then
    echo "file $spelling ours $(sha256sum <"$f" | cut -d' ' -f1)"
  else echo "file $spelling foreign"; fi
done
"""

# Run in a node with bash -c; the folder is the argument, the file's text comes on stdin.
WRITE_SCRIPT = 'mkdir -p "$1" && cat >"$1/hosts.toml.new" && mv "$1/hosts.toml.new" "$1/hosts.toml"'


def node_spellings(host: str) -> list:
    """The certs.d folders a node needs for the registry: containerd looks a pull's registry up by the
    exact host of the image reference (containerd docs/hosts.md), and a manifest may name the same
    registry on this host as localhost:PORT or 127.0.0.1:PORT, whichever the pushes used."""
    port = split_host(host)[1]
    suffix = f":{port}" if port else ""
    return list(dict.fromkeys([host, f"localhost{suffix}", f"127.0.0.1{suffix}"]))


def probe_port(host: str, tls_verify: bool) -> int:
    """The port to try: the host's, else the scheme's (443 for TLS, as podman tries first)."""
    return split_host(host)[1] or (443 if tls_verify else 80)


def network_gateways(inspect_output: str) -> list:
    """The gateways of `podman network inspect NAME` or `docker network inspect NAME`, IPv4 first:
    podman 4+ prints [{"subnets": [{"subnet", "gateway"}]}], docker [{"IPAM": {"Config": [{"Subnet",
    "Gateway"}]}}] (kind's docker network lists its IPv6 subnet first)."""
    try:
        data = json.loads(inspect_output or "null")
    except ValueError:
        return []
    found = []
    for network in data if isinstance(data, list) else [data]:
        if not isinstance(network, dict):
            continue
        entries = list(network.get("subnets") or []) + list((network.get("IPAM") or {}).get("Config") or [])
        for entry in entries:
            gateway = (entry.get("gateway") or entry.get("Gateway")) if isinstance(entry, dict) else None
            try:
                found.append(ipaddress.ip_address(str(gateway)))
            except ValueError:
                continue
    return [str(a) for a in sorted(dict.fromkeys(found), key=lambda a: a.version)]


@dataclass
class Probe:
    """What PROBE_SCRIPT saw in a node."""

    config_paths: list = field(default_factory=list)  # containerd's effective config_path settings
    names: dict = field(default_factory=dict)  # host name -> address in the node's /etc/hosts
    route: str = ""  # the node's default gateway
    answers: dict = field(default_factory=dict)  # address -> what it answered, in the order tried

    @property
    def reads_certs_d(self) -> bool | None:
        """Whether containerd reads CERTS_D; None when its config could not be read."""
        if not self.config_paths:
            return None
        return any(CERTS_D in value for value in self.config_paths)


def parse_probe(text: str) -> Probe:
    probe = Probe()
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "config_path":
            probe.config_paths = rest.split()
        elif word == "name" and len(rest.split()) == 2:
            name, address = rest.split()
            probe.names[name] = address
        elif word == "route" and rest.strip():
            probe.route = rest.strip()
        elif word == "probe" and rest.strip():
            address, _, answer = rest.partition(" ")
            probe.answers[address] = answer.strip()
    return probe


def parse_files(text: str) -> dict:
    """spelling -> ("none" | "foreign" | "ours", digest of kindling's file or "")."""
    states = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "file":
            states[parts[1]] = (parts[2], parts[3] if len(parts) > 3 else "")
    return states


ANSWERS = {
    "http": "plain HTTP",
    "https": "TLS",
    "silent": "a connection, and no HTTP answer",
}


def answer_kind(answer: str) -> str:
    """What an address did with `GET /v2/` sent over a plain connection: "http" (an HTTP answer), "https"
    (a TLS server: Go's and nginx's say so in a 400, others answer bytes that are not HTTP), "silent"
    (connected, no answer); or, when it did not connect, "refused", "no answer" (dropped: nothing
    within the time) or "unreachable: <why>" (bash's words, e.g. No route to host)."""
    if not answer.startswith("connected"):
        if not answer.strip():
            return "no answer"
        if "refused" in answer.lower():
            return "refused"
        reason = re.search(r"connect: ([^:]+?)\s*(?:\S+: /dev/tcp/|$)", answer)
        return f"unreachable: {reason.group(1).strip() if reason else answer.strip()[:80]}"
    body = answer[len("connected") :].strip()
    if not body:
        return "silent"
    if body.startswith("HTTP/") and not re.search(
        r"HTTP request to an HTTPS server|to HTTPS port", body, re.I
    ):
        return "http"
    return "https"


@dataclass(frozen=True)
class Route:
    """Where a node's containerd sends the pulls of a loopback registry."""

    address: str
    port: int | None
    scheme: str
    how: str  # where the address came from, for the output and the file's first line
    answered: str  # answer_kind of the address

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return host + (f":{self.port}" if self.port else "")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.endpoint}"


def sources(address: str, probe: Probe, gateways, network: str, node: str) -> str:
    """Where an address came from, in words."""
    said = [f"{name} in {node}'s /etc/hosts" for name, value in probe.names.items() if value == address]
    if address in gateways:
        said.append(f"the gateway of network {network}")
    if address == probe.route:
        said.append(f"{node}'s default route")
    return ", ".join(said) or "given"


def choose_route(host: str, probe: Probe, gateways, network: str, node: str, tls_verify: bool) -> Route:
    """The first address that accepted a connection from the node, or the refusal naming what was tried
    and the fixes."""
    port = split_host(host)[1]
    for address, answer in probe.answers.items():
        kind = answer_kind(answer)
        if kind not in ANSWERS:
            continue
        # An HTTP or TLS answer decides the scheme; a silent one is taken to speak what the pushes used.
        scheme = kind if kind in ("http", "https") else "https" if tls_verify else "http"
        return Route(address, port, scheme, sources(address, probe, gateways, network, node), kind)
    tried = "; ".join(
        f"{address} ({sources(address, probe, gateways, network, node)}): {answer_kind(answer)}"
        for address, answer in probe.answers.items()
    )
    shown_port = probe_port(host, tls_verify)
    raise KindlingError(
        f"registry {host} is on this host's loopback, which a Kind node cannot reach (the node's 127.0.0.1 "
        f"is its own), and no other address of this host answered on port {shown_port} from {node}: "
        f"{tried or 'no address of the host was found'}. A registry listening on 127.0.0.1 only is out of "
        f"the nodes' reach: make it listen on all addresses (e.g. `-p {shown_port}:5000`, not "
        f"`-p 127.0.0.1:{shown_port}:5000`) and check that no firewall drops the bridge's traffic; or give "
        "a registry address the nodes reach; or drop the registry (IMAGE_REGISTRY, --registry, the "
        "stack's registry:) and use --load-via registry, kind's local registry container"
    )


def hosts_toml(host: str, route: Route, tls_verify: bool) -> str:
    return render.loopback_hosts_toml(host, route.url, route.how, skip_verify=not tls_verify)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class LoopbackRoute:
    """Points the nodes of a Kind cluster at this host for a registry on its loopback."""

    def __init__(self, runner, engine: str = "podman", network: str = "kind"):
        self.runner, self.engine, self.network = runner, engine, network

    def _run(self, *args, **options):
        return self.runner.run([self.engine, *args], **options)

    def gateways(self) -> list:
        result = self._run("network", "inspect", self.network, check=False, mutating=False, timeout=30)
        return network_gateways(result.stdout) if result.exit_code == 0 else []

    def kind_node_containers(self) -> set:
        """The containers of every kind cluster here: kind labels each node's container with its cluster
        (pkg/cluster/internal/providers/podman/constants.go)."""
        result = self._run(
            "ps",
            "-a",
            "--filter",
            "label=io.x-k8s.kind.cluster",
            "--format",
            "{{.Names}}",
            check=False,
            mutating=False,
            timeout=60,
        )
        return set(result.stdout.split()) if result.exit_code == 0 else set()

    def files(self, node: str, spellings) -> dict:
        result = self._run(
            "exec", "-i", node, "bash", "-s", *spellings, input=FILES_SCRIPT, mutating=False, timeout=30
        )
        return parse_files(result.stdout)

    def probe(self, node: str, port: int, gateways) -> Probe:
        # Each address costs at most CONNECT_SECONDS; names and containerd's config a few more.
        result = self._run(
            "exec",
            "-i",
            node,
            "bash",
            "-s",
            str(port),
            *gateways,
            input=PROBE_SCRIPT,
            mutating=False,
            timeout=60 + CONNECT_SECONDS * (len(gateways) + 3),
        )
        return parse_probe(result.stdout)

    def wire(self, nodes, host: str, tls_verify: bool, log_path=None) -> str:
        """Write each node's hosts.toml for every spelling of the registry's host, unless it is already
        there or someone else's (kept: e.g. kind's guide sent localhost:5001 to its registry container).
        Returns the line saying what was done and how the address was found."""
        spellings, first = node_spellings(host), nodes[0]
        held = {node: self.files(node, spellings) for node in nodes}
        if held[first].get(host, ("none",))[0] == "foreign":
            return (
                f"registry {host}: {first} already has a hosts.toml for it that kindling did not write "
                "(e.g. kind's local-registry guide): kept"
            )
        gateways = self.gateways()
        probe = self.probe(first, probe_port(host, tls_verify), gateways)
        _note(log_path, f"from {first}: {probe}; gateways of network {self.network}: {gateways}")
        if probe.reads_certs_d is False:
            raise KindlingError(
                f"registry {host} is on this host's loopback, so the nodes need a hosts.toml in {CERTS_D}, "
                f"but the containerd of {first} does not read that folder (config_path "
                f"{' '.join(probe.config_paths)}): the cluster was made without kindling's containerd patch, "
                "from a node image that does not read it by default (kind's do since v0.27). Delete it "
                "(`invoke cluster.delete`) and run again: kindling creates it with the patch"
            )
        route = choose_route(host, probe, gateways, self.network, first, tls_verify)
        text = hosts_toml(host, route, tls_verify)
        written, kept = [], []
        for node in nodes:
            for spelling in spellings:
                state, held_digest = held[node].get(spelling, ("none", ""))
                if state == "foreign":
                    kept.append(f"{node}:{spelling}")
                    continue
                if state == "ours" and held_digest == digest(text):
                    continue
                folder = f"{CERTS_D}/{spelling}"
                self._run(
                    "exec", "-i", node, "bash", "-c", WRITE_SCRIPT, "write", folder, input=text, timeout=30
                )
                written.append(f"{node}:{spelling}")
        _note(log_path, f"hosts.toml written: {written or 'none (unchanged)'}; someone else's, kept: {kept}")
        caveat = (
            f"; its certificate must be valid for {route.address}"
            if route.scheme == "https" and tls_verify
            else ""
        )
        return (
            f"registry {host} is on this host's loopback: the nodes pull from {route.url} ({route.how}; "
            f"answered with {ANSWERS[route.answered]} from {first}){caveat}"
        )


def _note(log_path, text: str) -> None:
    """A line of kindling's own in a step's log."""
    if log_path:
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(f"kindling: {text}\n")
