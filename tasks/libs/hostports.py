"""The host ports a Kind config maps to a stack's NodePorts, and the wait until they answer.

A workload is ready when its pods are. Its NodePort answers on the host a moment later: once
kube-proxy on the node has programmed the port from the Service's EndpointSlice, which takes
seconds on a loaded host. Until then the node refuses the connection, so a suite started at
once would fail on a "connection refused" that says nothing about the code under test.

A Service may also publish a port its pods never serve: Kubernaut's AIAnalysis controller
Service maps an `api` port 8080 that the controller does not listen on. From the host, a port
kube-proxy has not programmed and a port no process serves both refuse. kube-proxy programs
every port of a Service in one sync (one iptables-restore or nftables transaction, from the
Service and its EndpointSlice), so once one port of a Service answers, a port of the same
Service that still refuses a moment later is not being served: it is reported, not waited for.
"""

import socket
import time
from dataclasses import dataclass

POLL_SECONDS = 0.25
CONNECT_SECONDS = 1.0
# How long a connection must stay open to count as answered. A rootless engine's port forwarder
# accepts every connection and closes it when the node refuses, so an accept alone proves little.
HOLD_SECONDS = 0.2
# How long a port may refuse after another port of its Service answered before it counts as not
# served by the pods (rather than not yet programmed by kube-proxy).
UNSERVED_SECONDS = 3.0


@dataclass(frozen=True)
class HostPort:
    service: str  # the Kubernetes Service
    node_port: int
    address: str  # where a client on the host connects
    port: int
    scheme: str = "http"
    name: str = ""  # the Service port's name

    @property
    def url(self) -> str:
        return f"{self.scheme}://localhost:{self.port}"


def scheme(service_port: dict) -> str:
    """https for a Service port that says it speaks TLS: `appProtocol: https` (the IANA name, as
    the Service API documents it), or a port named `https` or `https-<suffix>` (the convention
    Istio and Kubernaut follow); else http."""
    if str(service_port.get("appProtocol") or "").lower() == "https":
        return "https"
    name = str(service_port.get("name") or "")
    return "https" if name == "https" or name.startswith("https-") else "http"


def connect_address(listen_address: str) -> str:
    """Where a client reaches a port kind publishes on `listenAddress` (kind's default: 0.0.0.0)."""
    if listen_address in ("", "0.0.0.0"):
        return "127.0.0.1"
    if listen_address == "::":
        return "::1"
    return listen_address


def mapped(docs: list, kind_config: dict | None) -> list[HostPort]:
    """The TCP NodePorts of these objects' Services that the Kind config's extraPortMappings
    publish on the host, in the order the Services declare them."""
    published = {}
    for node in (kind_config or {}).get("nodes") or []:
        for mapping in node.get("extraPortMappings") or []:
            if not (mapping.get("containerPort") and mapping.get("hostPort")):
                continue
            if str(mapping.get("protocol") or "TCP").upper() != "TCP":
                continue
            address = connect_address(str(mapping.get("listenAddress") or ""))
            published.setdefault(int(mapping["containerPort"]), (address, int(mapping["hostPort"])))
    found = []
    for doc in docs:
        if doc.get("kind") != "Service":
            continue
        for port in (doc.get("spec") or {}).get("ports") or []:
            node_port = port.get("nodePort")
            if str(port.get("protocol") or "TCP").upper() != "TCP" or not node_port:
                continue
            if int(node_port) in published:
                address, host_port = published[int(node_port)]
                found.append(
                    HostPort(
                        doc["metadata"]["name"],
                        int(node_port),
                        address,
                        host_port,
                        scheme(port),
                        str(port.get("name") or ""),
                    )
                )
    return found


def endpoints(docs: list, kind_config: dict | None, probe=None) -> dict:
    """Kubernetes Service name -> <scheme>://localhost:<hostPort> of its first published NodePort,
    or, given probe(address, port) (answers, below), of its first published port that answers: a
    Service may publish a port no pod serves (the module's docstring), and a suite given that URL
    would fail on a refused connection. When none answers, the first."""
    by_service = {}
    for host_port in mapped(docs, kind_config):
        by_service.setdefault(host_port.service, []).append(host_port)
    urls = {}
    for service, ports in by_service.items():
        served = (
            next((p for p in ports if probe(p.address, p.port)), None) if probe and len(ports) > 1 else None
        )
        urls[service] = (served or ports[0]).url
    return urls


def port_endpoints(docs: list, kind_config: dict | None) -> dict:
    """(Kubernetes Service name, port name) -> URL, for each published port that has a name."""
    return {(p.service, p.name): p.url for p in mapped(docs, kind_config) if p.name}


def answers(address: str, port: int) -> bool:
    """A TCP connection is accepted and stays open: the server waits for the client to speak,
    or speaks first."""
    try:
        with socket.create_connection((address, port), timeout=CONNECT_SECONDS) as connection:
            connection.settimeout(HOLD_SECONDS)
            try:
                return connection.recv(1, socket.MSG_PEEK) != b""
            except TimeoutError:
                return True
    except OSError:
        return False


@dataclass(frozen=True)
class Waited:
    silent: list  # HostPorts that never answered: kube-proxy has not programmed them, or no pod serves
    unserved: list  # HostPorts that refuse while another port of their Service answers


def wait_answering(ports: list[HostPort], timeout: float, stopping=lambda: False) -> Waited:
    """Wait until every port answers, or refuses while its Service is programmed (see above)."""
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    programmed = {}  # Service -> when one of its ports first answered
    unserved = []
    while waiting:
        still = []
        for port in waiting:
            if answers(port.address, port.port):
                programmed.setdefault(port.service, time.monotonic())
            else:
                still.append(port)
        waiting = []
        for port in still:
            since = programmed.get(port.service)
            if since is not None and time.monotonic() - since >= UNSERVED_SECONDS:
                unserved.append(port)
            else:
                waiting.append(port)
        if not waiting or stopping() or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    return Waited(waiting, unserved)
