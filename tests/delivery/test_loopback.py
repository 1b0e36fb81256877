"""A registry on this host's loopback, pulled from by Kind's nodes: which hosts count, the hosts.toml the
nodes get, the address of the host they reach (found from `network inspect` and from a node), and the
refusals. In process: a scripted runner answers as podman, kind and kubectl would."""

import io
import json
import tomllib

import pytest

from tasks.libs import render
from tasks.libs.console import Console
from tasks.libs.delivery import loopback, registry, registryhost
from tasks.libs.environment import Environment
from tasks.libs.errors import KindlingError
from tasks.libs.phases import cluster
from tasks.libs.plan import Outcome
from tasks.libs.procs.fakerunner import FakeRunner
from tasks.libs.procs.runner import Result
from tasks.libs.samples import write_stack
from tasks.libs.settings import build_settings
from tasks.libs.stack.model import load_stack

# `podman network inspect kind` (podman 4.3, netavark) for the network kind makes: kind asks for an IPv6
# subnet and podman adds an IPv4 one.
PODMAN_INSPECT = json.dumps(
    [
        {
            "name": "kind",
            "driver": "bridge",
            "network_interface": "podman1",
            "subnets": [
                {"subnet": "fc00:f853:ccd:e793::/64", "gateway": "fc00:f853:ccd:e793::1"},
                {"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"},
            ],
            "ipv6_enabled": True,
            "internal": False,
            "dns_enabled": True,
            "ipam_options": {"driver": "host-local"},
        }
    ]
)
# `docker network inspect kind`: IPAM.Config, IPv6 first as kind creates it.
DOCKER_INSPECT = json.dumps(
    [
        {
            "Name": "kind",
            "Driver": "bridge",
            "EnableIPv6": True,
            "IPAM": {
                "Driver": "default",
                "Options": {},
                "Config": [
                    {"Subnet": "fc00:f853:ccd:e793::/64", "Gateway": "fc00:f853:ccd:e793::1"},
                    {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"},
                ],
            },
        }
    ]
)
# What bash in a node prints for the address that answers and for ones that do not (as seen in a
# podman 4.3 container on a bridge network, against listeners on 0.0.0.0 and on 127.0.0.1 only).
ANSWERED = (
    "connected HTTP/1.0 200 OK  Content-Length: 2  Content-Type: application/json; charset=utf-8  "
    "Docker-Distribution-Api-Version: registry/2.0    {}"
)
REFUSED = "environment: connect: Connection refused environment: /dev/tcp/10.89.0.1/5000: Connection refused "
NO_ROUTE = "environment: connect: No route to host environment: /dev/tcp/192.0.2.7/5000: No route to host "
CERTS_D_PATH = 'config_path config_path="/etc/containerd/certs.d"'


def probe_output(*answers, names=(("host.containers.internal", "10.89.0.1"),), route="10.89.0.1"):
    lines = [CERTS_D_PATH]
    lines += [f"name {name} {address}" for name, address in names]
    lines += [f"route {route}"] if route else []
    lines += [f"probe {address} {answer}" for address, answer in answers]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:5000",
        "127.0.0.1",
        "127.1.2.3:5000",
        "127.255.255.254:443",
        "localhost:5000",
        "LOCALHOST:5000",
        "localhost",
        "[::1]:5000",
        "[::1]",
        "[0:0:0:0:0:0:0:1]:5000",
        "[::ffff:127.0.0.1]:5000",
        "0.0.0.0:5000",
        "[::]:5000",
    ],
)
def test_every_spelling_of_the_hosts_loopback_is_loopback(host):
    assert registryhost.is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        "registry.example:5000",
        "10.89.0.1:5000",
        "192.168.1.20:5000",
        "[fd00::1]:5000",
        "localhost.example:5000",
        "mylocalhost:5000",
        "128.0.0.1:5000",
        "host.containers.internal:5000",
    ],
)
def test_other_hosts_are_not_loopback(host):
    assert not registryhost.is_loopback(host)


def test_host_and_port_are_split_for_every_spelling():
    assert registryhost.split_host("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert registryhost.split_host("[::1]:5000") == ("::1", 5000)
    assert registryhost.split_host("[::1]") == ("::1", None)
    assert registryhost.split_host("localhost") == ("localhost", None)
    assert loopback.probe_port("localhost", tls_verify=True) == 443
    assert loopback.probe_port("localhost", tls_verify=False) == 80
    assert loopback.probe_port("127.0.0.1:5000", tls_verify=True) == 5000


def test_each_node_gets_the_registry_as_written_as_localhost_and_as_127_0_0_1():
    assert loopback.node_spellings("127.0.0.1:5000") == ["127.0.0.1:5000", "localhost:5000"]
    assert loopback.node_spellings("localhost:5000") == ["localhost:5000", "127.0.0.1:5000"]
    assert loopback.node_spellings("[::1]:5000") == ["[::1]:5000", "localhost:5000", "127.0.0.1:5000"]
    assert loopback.node_spellings("127.0.0.2:5000") == ["127.0.0.2:5000", "localhost:5000", "127.0.0.1:5000"]


def test_gateways_from_podman_network_inspect_ipv4_first():
    assert loopback.network_gateways(PODMAN_INSPECT) == ["10.89.0.1", "fc00:f853:ccd:e793::1"]


def test_gateways_from_docker_network_inspect_ipv4_first():
    assert loopback.network_gateways(DOCKER_INSPECT) == ["172.18.0.1", "fc00:f853:ccd:e793::1"]


@pytest.mark.parametrize(
    "output",
    [
        "",
        "Error: unable to find network with name or ID kind: network not found",
        "[]",
        json.dumps([{"name": "kind", "subnets": [{"subnet": "10.89.0.0/24"}]}]),  # no gateway
        json.dumps([{"Name": "kind", "IPAM": {"Config": [{"Subnet": "172.18.0.0/16", "Gateway": "bad"}]}}]),
        json.dumps([{"name": "kind", "subnets": None}]),
    ],
)
def test_gateways_of_a_missing_or_odd_network_are_none(output):
    assert loopback.network_gateways(output) == []


def test_hosts_toml_sends_pulls_to_the_hosts_address_and_says_how_it_was_found():
    text = render.loopback_hosts_toml(
        "127.0.0.1:5000", "http://10.89.0.1:5000", "host.containers.internal in c-control-plane's /etc/hosts"
    )
    assert text.startswith(
        "# kindling: 127.0.0.1:5000 is on the host's loopback; the node reaches the host at "
        "http://10.89.0.1:5000 (host.containers.internal in c-control-plane's /etc/hosts)\n"
    )
    assert tomllib.loads(text) == {"host": {"http://10.89.0.1:5000": {"capabilities": ["pull", "resolve"]}}}
    tls = render.loopback_hosts_toml("localhost:5000", "https://10.89.0.1:5000", "x", skip_verify=True)
    assert tomllib.loads(tls)["host"]["https://10.89.0.1:5000"]["skip_verify"] is True
    # skip_verify means nothing to plain HTTP, and is never written for it.
    assert "skip_verify" not in render.loopback_hosts_toml("a:1", "http://10.0.0.1:1", "x", skip_verify=True)


def test_route_urls_bracket_ipv6_and_keep_the_registrys_port():
    assert loopback.Route("10.89.0.1", 5000, "http", "", "http").url == "http://10.89.0.1:5000"
    assert loopback.Route("fc00::1", 5000, "https", "", "https").url == "https://[fc00::1]:5000"
    assert loopback.Route("10.89.0.1", None, "https", "", "https").url == "https://10.89.0.1"


@pytest.mark.parametrize(
    "answer, kind",
    [
        (ANSWERED, "http"),
        (
            'connected HTTP/1.1 401 Unauthorized  Www-Authenticate: Bearer realm="https://auth.example/token"',
            "http",
        ),
        ("connected HTTP/1.0 400 Bad Request    Client sent an HTTP request to an HTTPS server. ", "https"),
        ("connected HTTP/1.1 400 Bad Request  The plain HTTP request was sent to HTTPS port", "https"),
        ("connected \x15\x03\x01\x00\x02\x02P", "https"),
        ("connected ", "silent"),
        (REFUSED, "refused"),
        ("", "no answer"),
        (NO_ROUTE, "unreachable: No route to host"),
    ],
)
def test_what_an_address_answered_from_the_node(answer, kind):
    assert loopback.answer_kind(answer) == kind


def test_the_engines_name_for_the_host_is_preferred_and_the_answer_picks_the_scheme():
    probe = loopback.parse_probe(probe_output(("10.89.0.1", ANSWERED)))
    assert probe.reads_certs_d is True
    assert probe.names == {"host.containers.internal": "10.89.0.1"} and probe.route == "10.89.0.1"
    route = loopback.choose_route("127.0.0.1:5000", probe, ["10.89.0.1"], "kind", "c-control-plane", True)
    assert route.url == "http://10.89.0.1:5000"  # it answered plain HTTP, whatever the pushes' TLS setting
    assert route.how == (
        "host.containers.internal in c-control-plane's /etc/hosts, the gateway of network kind, "
        "c-control-plane's default route"
    )


def test_the_gateway_is_used_when_the_engines_name_for_the_host_does_not_answer():
    # Rootless podman: host.containers.internal is the host's own address; here it refused, and the
    # gateway of the network (docker, rootful) answered.
    output = probe_output(
        ("192.168.1.20", REFUSED),
        ("172.18.0.1", "connected "),
        names=(("host.containers.internal", "192.168.1.20"),),
        route="172.18.0.1",
    )
    probe = loopback.parse_probe(output)
    route = loopback.choose_route("localhost:5000", probe, ["172.18.0.1"], "kind", "n", tls_verify=False)
    assert (route.address, route.scheme, route.answered) == ("172.18.0.1", "http", "silent")
    assert route.how == "the gateway of network kind, n's default route"
    tls = loopback.choose_route("localhost:5000", probe, ["172.18.0.1"], "kind", "n", tls_verify=True)
    assert tls.scheme == "https"  # no HTTP answer: what the pushes used


def test_a_registry_on_127_0_0_1_only_is_refused_naming_what_was_tried_and_the_fixes():
    probe = loopback.parse_probe(probe_output(("10.89.0.1", REFUSED), ("192.0.2.7", NO_ROUTE)))
    with pytest.raises(KindlingError) as failure:
        loopback.choose_route("127.0.0.1:5000", probe, ["10.89.0.1"], "kind", "c-control-plane", False)
    message = str(failure.value)
    assert "no other address of this host answered on port 5000 from c-control-plane" in message
    assert (
        "10.89.0.1 (host.containers.internal in c-control-plane's /etc/hosts, the gateway of network kind, "
        "c-control-plane's default route): refused" in message
    )
    assert "192.0.2.7 (given): unreachable: No route to host" in message
    assert "-p 127.0.0.1:5000:5000" in message and "--load-via registry" in message


def test_containerds_config_path_is_read_from_its_effective_config():
    def reads(line):
        return loopback.parse_probe(line + "\n").reads_certs_d

    assert reads(CERTS_D_PATH) is True
    assert reads("config_path config_path='/etc/containerd/certs.d:/etc/docker/certs.d'") is True  # 2.x
    assert reads('config_path config_path=""') is False  # containerd 1.6's default
    assert reads("config_path ") is None  # no containerd to ask


class KindNodes:
    """Answers as podman would for a kind cluster's nodes (a FakeRunner's answers); each node's
    certs.d is a dict the writes change, so a second run sees the first one's files."""

    def __init__(self, nodes, probe, inspect=PODMAN_INSPECT):
        self.nodes, self.probe, self.inspect = nodes, probe, inspect
        self.files = {node: {} for node in nodes}  # node -> spelling -> text
        self.kind_containers = list(nodes)  # what `podman ps` lists with kind's cluster label
        self.hosting = None  # the cluster's local-registry-hosting ConfigMap, if any

    def __call__(self, call):
        argv, input = call.argv, call.input
        if argv[:3] == ["kind", "get", "nodes"]:
            return Result("\n".join(self.nodes) + "\n", 0)
        if argv[0] == "kubectl" and "configmap/local-registry-hosting" in argv:
            return Result(json.dumps(self.hosting), 0) if self.hosting else Result("", 1, "NotFound")
        if argv[0] == "kubectl" and argv[argv.index("get") + 1] == "nodes":
            return Result(json.dumps({"items": [{"metadata": {"name": n}} for n in self.nodes]}), 0)
        if argv[1:3] == ["ps", "-a"] and "label=io.x-k8s.kind.cluster" in argv:
            return Result("\n".join(self.kind_containers) + "\n", 0)
        if argv[1:3] == ["network", "inspect"]:
            return Result(self.inspect, 0)
        if argv[1:3] == ["exec", "-i"] and argv[4:6] == ["bash", "-s"]:
            node = argv[3]
            if input == loopback.PROBE_SCRIPT:
                return Result(self.probe, 0)
            assert input == loopback.FILES_SCRIPT
            return Result("".join(self._state(node, spelling) for spelling in argv[6:]), 0)
        if argv[1:3] == ["exec", "-i"] and argv[4:7] == ["bash", "-c", loopback.WRITE_SCRIPT]:
            folder = argv[8]
            self.files[argv[3]][folder.removeprefix(loopback.CERTS_D + "/")] = input
            return Result("", 0)
        return Result("", 0)

    def _state(self, node, spelling):
        text = self.files[node].get(spelling)
        if text is None:
            return f"file {spelling} none\n"
        if text.startswith(render.HOSTS_TOML_MARK):
            return f"file {spelling} ours {loopback.digest(text)}\n"
        return f"file {spelling} foreign\n"


def mutations(runner):
    return [c.argv for c in runner.calls if c.mutating]


def test_every_node_gets_hosts_toml_for_every_spelling_and_a_warm_run_changes_nothing(tmp_path):
    nodes = ["c-control-plane", "c-worker"]
    world = KindNodes(nodes, probe_output(("10.89.0.1", ANSWERED)))
    runner = FakeRunner(world)
    route = loopback.LoopbackRoute(runner, "podman", "kind")
    line = route.wire(nodes, "127.0.0.1:5000", tls_verify=False, log_path=tmp_path / "log")
    assert line == (
        "registry 127.0.0.1:5000 is on this host's loopback: the nodes pull from http://10.89.0.1:5000 "
        "(host.containers.internal in c-control-plane's /etc/hosts, the gateway of network kind, "
        "c-control-plane's default route; answered with plain HTTP from c-control-plane)"
    )
    for node in nodes:
        assert sorted(world.files[node]) == ["127.0.0.1:5000", "localhost:5000"]
        text = world.files[node]["localhost:5000"]
        assert tomllib.loads(text)["host"] == {"http://10.89.0.1:5000": {"capabilities": ["pull", "resolve"]}}
    # Only the first node is asked for the address; the gateways are passed to it.
    probes = [c.argv for c in runner.calls if c.input == loopback.PROBE_SCRIPT]
    probe = ["podman", "exec", "-i", "c-control-plane", "bash", "-s"]
    assert probes == [probe + ["5000", "10.89.0.1", "fc00:f853:ccd:e793::1"]]
    assert len(mutations(runner)) == 4 and "10.89.0.1" in (tmp_path / "log").read_text()

    runner.calls.clear()
    route.wire(nodes, "127.0.0.1:5000", tls_verify=False)
    assert mutations(runner) == []  # the same files are there: nothing is written again


def test_a_hosts_toml_kindling_did_not_write_is_kept(tmp_path):
    """kind's local-registry guide sends the nodes' localhost:PORT to its registry container."""
    world = KindNodes(["n"], probe_output(("10.89.0.1", REFUSED)))
    runner = FakeRunner(world)
    guide = '[host."http://kind-registry:5000"]\n'
    world.files["n"]["localhost:5001"] = guide
    line = loopback.LoopbackRoute(runner).wire(["n"], "localhost:5001", tls_verify=False)
    assert "kindling did not write" in line and "kept" in line
    assert world.files["n"] == {"localhost:5001": guide} and mutations(runner) == []
    assert not [c.argv for c in runner.calls if c.input == loopback.PROBE_SCRIPT]  # nothing to find

    # Another spelling's file of someone else's is kept too, and the rest written.
    world = KindNodes(["n"], probe_output(("10.89.0.1", ANSWERED)))
    runner = FakeRunner(world)
    world.files["n"]["localhost:5001"] = guide
    loopback.LoopbackRoute(runner).wire(["n"], "127.0.0.1:5001", tls_verify=False)
    assert world.files["n"]["localhost:5001"] == guide
    assert world.files["n"]["127.0.0.1:5001"].startswith(render.HOSTS_TOML_MARK)


def test_a_node_whose_containerd_does_not_read_certs_d_is_refused_with_the_fix():
    output = probe_output(("10.89.0.1", ANSWERED)).replace(CERTS_D_PATH, 'config_path config_path=""')
    world = KindNodes(["n"], output)
    runner = FakeRunner(world)
    with pytest.raises(KindlingError, match=r"does not read that folder .*invoke cluster.delete"):
        loopback.LoopbackRoute(runner).wire(["n"], "127.0.0.1:5000", tls_verify=False)
    assert mutations(runner) == []


def test_a_tls_registry_the_pushes_verify_is_named_with_its_certificate_caveat():
    tls = "connected HTTP/1.0 400 Bad Request    Client sent an HTTP request to an HTTPS server. "
    world = KindNodes(["n"], probe_output(("10.89.0.1", tls)))
    runner = FakeRunner(world)
    line = loopback.LoopbackRoute(runner).wire(["n"], "localhost:5000", tls_verify=True)
    assert "https://10.89.0.1:5000" in line and "its certificate must be valid for 10.89.0.1" in line
    assert "skip_verify" not in world.files["n"]["localhost:5000"]


def test_the_local_registry_hosting_configmap_says_which_host_the_nodes_map():
    hosting = render.local_registry_hosting("localhost:5001")
    assert render.declared_local_registry(hosting) == "localhost:5001"

    def hosting_of(text):
        return {"data": {"localRegistryHosting.v1": text}}

    other_name = hosting_of('host: "localhost:5001"\nhostFromContainerRuntime: "r:5000"\n')
    assert render.declared_local_registry(other_name) is None  # the nodes know it by another name
    same = hosting_of('host: "localhost:5001"\nhostFromContainerRuntime: "localhost:5001"')
    assert render.declared_local_registry(same) == "localhost:5001"
    for odd in (None, {}, {"data": {}}, {"data": {"localRegistryHosting.v1": ": ["}}, {"data": {"x": "y"}}):
        assert render.declared_local_registry(odd) is None


def loopback_environment(tmp_path, runner, **options):
    env = {
        "KINDLING_HOME": str(tmp_path / "home"),
        "KINDLING_LOCK_DIR": str(tmp_path / "locks"),
        "USER": "tester",
        "IMAGE_REGISTRY": "127.0.0.1:5000",
        "IMAGE_REGISTRY_TLS_VERIFY": "false",
    }
    path = write_stack(tmp_path / "stack", {"api": {}}, name="lo", project="lo", base_image="busybox")
    stack = load_stack(path, env=env)
    settings = build_settings(stack, env, memory_budget=0, **options)
    console = Console(io.StringIO(), color=False)
    return Environment(stack, settings, env, console=console, runner=runner)


def test_a_loopback_registry_on_a_cluster_kindling_cannot_look_into_is_refused_before_any_build(tmp_path):
    world = KindNodes(["ip-10-0-1-7.ec2.internal"], "")
    runner = FakeRunner(world)
    world.kind_containers = []  # a remote cluster: its nodes are no containers here
    environment = loopback_environment(tmp_path, runner, context="prod")
    steps = environment.setup_steps(environment.ctx.stack.order())
    with pytest.raises(KindlingError, match=r"the existing cluster \(context prod\) cannot pull from it"):
        environment.execute(steps)
    asked = [argv[: argv.index("get") + 2] if "get" in argv else argv[:3] for argv in runner.commands()]
    assert asked == [
        ["kubectl", "--context", "prod", "get", "configmap/local-registry-hosting"],
        ["kubectl", "--context", "prod", "get", "nodes"],
        ["podman", "ps", "-a"],
    ]
    assert all(not c.mutating for c in runner.calls)  # nothing built, nothing changed


def test_an_existing_kind_cluster_is_used_when_every_node_maps_the_loopback_registry(tmp_path):
    """kind's local-registry guide: each node's hosts.toml sends the host to its registry container."""
    world = KindNodes(["theirs-control-plane", "theirs-worker"], "")
    runner = FakeRunner(world)
    world.files["theirs-control-plane"]["127.0.0.1:5000"] = '[host."http://kind-registry:5000"]\n'
    environment = loopback_environment(tmp_path, runner, context="kind-theirs")
    with pytest.raises(KindlingError, match="theirs-worker has no hosts.toml for it"):
        registry.refuse_unreachable(environment.ctx)
    world.files["theirs-worker"]["127.0.0.1:5000"] = '[host."http://kind-registry:5000"]\n'
    registry.refuse_unreachable(environment.ctx)
    assert (
        "the cluster's nodes map it (each has a hosts.toml for it)"
        in environment.ctx.console.stream.getvalue()
    )
    assert not mutations(runner)  # their nodes are only read


def test_an_existing_cluster_that_declares_the_loopback_registry_is_used(tmp_path):
    world = KindNodes([], "")
    runner = FakeRunner(world)
    world.hosting = render.local_registry_hosting("127.0.0.1:5000")
    environment = loopback_environment(tmp_path, runner, kubeconfig=str(tmp_path / "k"))
    registry.refuse_unreachable(environment.ctx)  # no error: it says its nodes map it
    assert "local-registry-hosting names it" in environment.ctx.console.stream.getvalue()
    assert len(runner.calls) == 1  # nothing else is asked


def test_the_cluster_kindling_makes_reads_certs_d_and_its_nodes_are_wired(tmp_path):
    world = KindNodes(["lo-e2e-control-plane"], probe_output(("10.89.0.1", ANSWERED)))
    runner = FakeRunner(world)
    environment = loopback_environment(tmp_path, runner)
    ctx = environment.ctx
    assert ctx.settings.delivery.reads_certs_d
    config = cluster.rendered_kind_config(ctx).read_text()
    assert 'config_path = "/etc/containerd/certs.d"' in config
    assert registry.wire_loopback(ctx, ctx.settings.delivery.registry) is Outcome.WIRED
    assert "the nodes pull from http://10.89.0.1:5000" in ctx.console.stream.getvalue()
    assert sorted(world.files["lo-e2e-control-plane"]) == ["127.0.0.1:5000", "localhost:5000"]


def test_a_dry_run_says_how_the_address_will_be_found_and_runs_nothing(tmp_path):
    world = KindNodes(["lo-e2e-control-plane"], "")
    runner = FakeRunner(world, dry_run=True)
    environment = loopback_environment(tmp_path, runner, dry_run=True)
    assert registry.wire_loopback(environment.ctx, "127.0.0.1:5000") is Outcome.WIRED
    said = environment.ctx.console.stream.getvalue()
    assert "host.containers.internal or the gateway of network kind" in said and runner.calls == []
