"""The NodePorts a Kind config publishes on the host, and the wait until they answer: the pure
mapping, then real sockets on loopback standing where kube-proxy's forwarded port would."""

import socket
import threading
import time

import pytest
import yaml

from tasks.libs import hostports
from tasks.libs.environment import Environment
from tasks.libs.errors import NotReady
from tasks.libs.hostports import HostPort
from tasks.libs.phases import deploy, suite
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.samples import write_stack
from tasks.libs.settings import build_settings
from tasks.libs.stack.model import load_stack


def service(name, *ports):
    return {"kind": "Service", "metadata": {"name": name}, "spec": {"type": "NodePort", "ports": list(ports)}}


def kind_config(*mappings):
    return {"kind": "Cluster", "nodes": [{"role": "control-plane", "extraPortMappings": list(mappings)}]}


def test_only_tcp_nodeports_the_config_publishes_are_mapped():
    docs = [
        service("api", {"port": 80, "nodePort": 30080}, {"port": 9090, "nodePort": 30090}),
        service("dns", {"port": 53, "nodePort": 30053, "protocol": "UDP"}),
        service("internal", {"port": 5432}),
        {"kind": "Deployment", "metadata": {"name": "api"}},
    ]
    config = kind_config(
        {"containerPort": 30080, "hostPort": 8080},
        {"containerPort": 30090, "hostPort": 9090, "listenAddress": "127.0.0.2"},
        {"containerPort": 30053, "hostPort": 5353, "protocol": "UDP"},
        {"containerPort": 30432, "hostPort": 5432},  # no Service of these objects has it
    )
    assert hostports.mapped(docs, config) == [
        HostPort("api", 30080, "127.0.0.1", 8080),
        HostPort("api", 30090, "127.0.0.2", 9090),
    ]
    assert hostports.endpoints(docs, config) == {"api": "http://localhost:8080"}
    assert hostports.mapped(docs, None) == []


@pytest.mark.parametrize(
    "port, expected",
    [
        ({"name": "https"}, "https"),
        ({"name": "https-api"}, "https"),
        ({"name": "api", "appProtocol": "HTTPS"}, "https"),
        ({"name": "httpsx"}, "http"),
        ({"name": "http", "appProtocol": "http"}, "http"),
        ({"name": "grpc", "appProtocol": "kubernetes.io/h2c"}, "http"),
        ({}, "http"),
    ],
)
def test_a_port_that_says_it_speaks_tls_gets_an_https_url(port, expected):
    docs = [service("api", {"port": 443, "nodePort": 30443, **port})]
    config = kind_config({"containerPort": 30443, "hostPort": 8443})
    assert hostports.endpoints(docs, config) == {"api": f"{expected}://localhost:8443"}


@pytest.mark.parametrize("listen,address", [("", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "::1")])
def test_a_wildcard_listen_address_is_reached_on_loopback(listen, address):
    assert hostports.connect_address(listen) == address


class Server:
    """A TCP server on loopback; `close_at_once` accepts and hangs up, as a rootless engine's port
    forwarder does when the node behind it refuses."""

    def __init__(self, close_at_once=False, start_after=0.0):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.close_at_once, self.start_after = close_at_once, start_after
        self.accepted = []
        if not start_after:
            # Listening before the constructor returns: a loaded host may start the thread late, and
            # a connection before listen() is refused.
            self.socket.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        if self.start_after:
            time.sleep(self.start_after)
            self.socket.listen()
        self.socket.settimeout(0.1)
        while self.socket.fileno() != -1:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            if self.close_at_once:
                connection.close()
            else:
                self.accepted.append(connection)

    def close(self):
        self.socket.close()
        self.thread.join(timeout=2)
        for connection in self.accepted:
            connection.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_listening_server_answers_and_a_refused_or_hung_up_port_does_not():
    serving, hanging_up = Server(), Server(close_at_once=True)
    try:
        assert hostports.answers("127.0.0.1", serving.port)
        assert not hostports.answers("127.0.0.1", hanging_up.port)
        assert not hostports.answers("127.0.0.1", closed_port())
    finally:
        serving.close()
        hanging_up.close()


def test_each_named_port_has_a_url_and_the_services_url_is_its_first_port_that_answers():
    """Kubernaut's AIAnalysis controller Service publishes `api` first, which no pod serves: the
    Service's URL is its health port, and each named port keeps a URL of its own."""
    serving = Server()
    unserved, unnamed = closed_port(), closed_port()
    try:
        docs = [
            service(
                "controller",
                {"name": "api", "port": 8080, "nodePort": 30084},
                {"name": "health", "port": 8081, "nodePort": 30284},
            ),
            service("db", {"port": 5432, "nodePort": 30432}),
        ]
        config = kind_config(
            {"containerPort": 30084, "hostPort": unserved},
            {"containerPort": 30284, "hostPort": serving.port},
            {"containerPort": 30432, "hostPort": unnamed},
        )
        assert hostports.port_endpoints(docs, config) == {
            ("controller", "api"): f"http://localhost:{unserved}",
            ("controller", "health"): f"http://localhost:{serving.port}",
        }
        assert hostports.endpoints(docs, config, hostports.answers) == {
            "controller": f"http://localhost:{serving.port}",
            "db": f"http://localhost:{unnamed}",  # its only port: not probed
        }
        # Unprobed (a dry run), or when none answers: the first published port.
        first = {"controller": f"http://localhost:{unserved}", "db": f"http://localhost:{unnamed}"}
        assert hostports.endpoints(docs, config) == first
        assert hostports.endpoints(docs, config, lambda address, port: False) == first
    finally:
        serving.close()


def test_the_wait_ends_when_a_late_port_answers_and_names_the_one_that_never_does():
    late = Server(start_after=0.6)
    never = HostPort("silent", 30001, "127.0.0.1", closed_port())
    try:
        started = time.monotonic()
        waited = hostports.wait_answering([HostPort("late", 30000, "127.0.0.1", late.port)], 10)
        assert waited == hostports.Waited([], [])
        assert 0.5 < time.monotonic() - started < 5
        started = time.monotonic()
        assert hostports.wait_answering([never], 0.5).silent == [never]
        assert time.monotonic() - started < 3
        # An interrupted run stops waiting at once.
        started = time.monotonic()
        assert hostports.wait_answering([never], 30, stopping=lambda: True).silent == [never]
        assert time.monotonic() - started < 3
    finally:
        late.close()


def test_a_port_refused_while_its_services_other_port_answers_is_reported_not_waited_for():
    """kube-proxy programs a Service's ports together: one answering and its sibling refusing a
    moment later means no container serves the sibling (Kubernaut's controller `api` port)."""
    serving = Server()
    try:
        health = HostPort("controller", 30284, "127.0.0.1", serving.port)
        api = HostPort("controller", 30084, "127.0.0.1", closed_port())
        other = HostPort("elsewhere", 30085, "127.0.0.1", closed_port())
        started = time.monotonic()
        waited = hostports.wait_answering([api, health], 30)
        assert waited == hostports.Waited([], [api])
        assert hostports.UNSERVED_SECONDS <= time.monotonic() - started < hostports.UNSERVED_SECONDS + 3
        # A refusing port of a Service none of whose ports answered is still waited for.
        assert hostports.wait_answering([other, health], 0.5) == hostports.Waited([other], [])
    finally:
        serving.close()


def deploy_context(tmp_path, host_port, env_extra=None):
    """A run context for a one-service stack whose Kind config publishes NodePort 30080 on
    host_port; commands are scripted (none is needed to wait on a socket)."""
    path = write_stack(
        tmp_path / "stack", {"api": {"timeout": 1}}, name="ports", project="ports", base_image="busybox"
    )
    config = tmp_path / "stack" / "kind.yaml"
    config.write_text(yaml.safe_dump(kind_config({"containerPort": 30080, "hostPort": host_port})))
    raw = yaml.safe_load(path.read_text())
    raw["cluster"]["config"] = "kind.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = {
        "KINDLING_HOME": str(tmp_path / "home"),
        "KINDLING_LOCK_DIR": str(tmp_path),
        "USER": "t",
        **(env_extra or {}),
    }
    stack = load_stack(path, env=env)
    environment = Environment(stack, build_settings(stack, env, memory_budget=0), env, runner=FakeRunner())
    return environment.ctx


def test_a_deploy_is_not_ready_until_its_published_nodeport_answers_on_the_host(tmp_path):
    docs = [service("api", {"port": 80, "nodePort": 30080})]
    server = Server()
    try:
        deploy.wait_host_ports(deploy_context(tmp_path / "up", server.port), "api", docs)
    finally:
        server.close()
    port = closed_port()
    with pytest.raises(NotReady) as raised:
        deploy.wait_host_ports(deploy_context(tmp_path / "down", port), "api", docs)
    text = str(raised.value)
    assert f"Service api nodePort 30080 -> 127.0.0.1:{port}" in text
    assert "after 1 s" in text and "kind.yaml" in text and "kube-proxy" in text


def test_the_suite_is_told_each_named_port_and_the_port_of_the_service_that_answers(tmp_path):
    serving = Server()
    unserved = closed_port()
    try:
        ctx = deploy_context(tmp_path, unserved)
        config = tmp_path / "stack" / "kind.yaml"
        config.write_text(
            yaml.safe_dump(
                kind_config(
                    {"containerPort": 30080, "hostPort": unserved},
                    {"containerPort": 30081, "hostPort": serving.port},
                )
            )
        )
        manifest = service(
            "api-svc",
            {"name": "api", "port": 8080, "nodePort": 30080},
            {"name": "health-probe", "port": 8081, "nodePort": 30081},
        )
        (tmp_path / "stack" / "manifests" / "api.yaml").write_text(
            yaml.safe_dump({"apiVersion": "v1", **manifest})
        )
        env = suite.suite_env(ctx)
    finally:
        serving.close()
    assert env["E2E_URL_API_SVC"] == f"http://localhost:{serving.port}"
    assert env["E2E_URL_API_SVC_API"] == f"http://localhost:{unserved}"
    assert env["E2E_URL_API_SVC_HEALTH_PROBE"] == f"http://localhost:{serving.port}"
