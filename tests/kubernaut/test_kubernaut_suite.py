"""The AIAnalysis stack's suite (scripts/kubernaut/suite.py) without a cluster: its pure helpers (mock-llm's
scenarios, the AIAnalysis fixture and what a completed one must show, port-forward's line), its TLS
client against a local HTTPS server with certificates made as the certs step makes them, and its
port-forward handling against a stand-in kubectl."""

import http.server
import importlib
import importlib.util
import json
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

SCRIPTS = ROOT / "scripts" / "kubernaut"
KUBERNAUT_CHECKOUT = os.environ.get("KUBERNAUT_CHECKOUT", "")
NS = "kubernaut-system"

if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
seed = importlib.import_module("seed")
certs = importlib.import_module("certs")
_spec = importlib.util.spec_from_file_location("kubernaut_suite", SCRIPTS / "suite.py")
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)

IDS = {
    "oomkill-increase-memory-v1": "5d0e4b4c-1f7e-5f3a-9a51-0c6f3a1f0e11",
    "crashloop-config-fix-v1": "7a1c2d3e-4f50-5a6b-8c7d-9e0f1a2b3c4d",
    "generic-restart-v1": "0b9c8d7e-6f5a-5b4c-9d3e-2f1a0b9c8d7e",
}


def rendered_scenarios(ids=None) -> str:
    template = (SCRIPTS / "mock-llm-scenarios.yaml").read_text()
    return seed.render_scenarios(template, NS, ids or IDS, ["staging", "production", "test"])


# ---- mock-llm's scenarios ----


def test_seeded_ids_reads_what_seed_writes():
    assert suite.seeded_ids(rendered_scenarios()) == IDS


def test_seeded_ids_agree_with_a_yaml_parser():
    """The same ids mock-llm's own loader (gopkg.in/yaml) would see under `scenarios:`."""
    scenarios = yaml.safe_load(rendered_scenarios())["scenarios"]
    by_name = {key.split(":")[0]: value["workflow_id"] for key, value in scenarios.items() if ":" in key}
    assert suite.seeded_ids(rendered_scenarios()) == by_name


def test_seeded_ids_ignore_other_scenarios_and_keyword_tool_calls():
    text = rendered_scenarios()
    assert "injection_configmap_read" in text and text.count("workflow_id:") > 3 * len(IDS)
    assert set(suite.seeded_ids(text)) == set(IDS)


def test_seeded_ids_refuse_a_workflow_with_two_ids():
    text = 'scenarios:\n  a-v1:staging:\n    workflow_id: "1"\n  a-v1:production:\n    workflow_id: "2"\n'
    with pytest.raises(ValueError, match="a-v1 has two ids"):
        suite.seeded_ids(text)


def test_seeded_ids_of_nothing_is_empty():
    assert suite.seeded_ids("scenarios:\n  parallel_tools:\n    force_text: false\n") == {}


# ---- mock-llm's request, port-forward ----


def test_chat_request_names_the_signal_as_mock_llm_reads_it():
    body = suite.chat_request("OOMKilled")
    text = " ".join(m["content"] for m in body["messages"]).lower()
    # scenarios/match_helpers.go reSignalName, on the lower-cased content
    assert re.search(r"(?i)signal name:\s*(\S+)", text).group(1) == "oomkilled"
    # nothing that would select another scenario: the keyword scenarios, proactive mode, errors
    for word in ("investigat", "remediation", "predicted", "proactive", "mock_", "workflow"):
        assert word not in text
    assert body["messages"][-1]["role"] == "user" and "tools" not in body


@pytest.mark.parametrize(
    "line, port",
    [
        ("Forwarding from 127.0.0.1:43121 -> 8080\n", 43121),
        ("Forwarding from [::1]:43121 -> 8080\n", None),
        ("Handling connection for 43121\n", None),
    ],
)
def test_forwarded_port(line, port):
    assert suite.forwarded_port(line) == port


@pytest.fixture
def fake_kubectl(tmp_path, monkeypatch):
    """A kubectl on PATH that runs the given shell body, with its arguments in $@."""

    def install(body: str):
        script = tmp_path / "kubectl"
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        return tmp_path

    return install


def test_port_forward_reads_the_port_and_stops_kubectl(fake_kubectl):
    folder = fake_kubectl(
        'echo "$@" > "$(dirname "$0")/argv"\necho "Forwarding from 127.0.0.1:45678 -> 8080"\nexec sleep 60'
    )
    forward = suite.PortForward("mock-llm", 8080, timeout=10)
    try:
        assert forward.url == "http://127.0.0.1:45678"
        assert forward.process.poll() is None
    finally:
        forward.stop()
    assert forward.process.poll() is not None
    assert (folder / "argv").read_text().split() == [
        "port-forward",
        "-n",
        suite.NAMESPACE,
        "service/mock-llm",
        ":8080",
    ]


def test_port_forward_failure_says_what_kubectl_said(fake_kubectl):
    fake_kubectl('echo "error: services \\"mock-llm\\" not found" >&2\nexit 1')
    with pytest.raises(AssertionError, match=r'\(kubectl exited 1\): error: services "mock-llm" not found'):
        suite.PortForward("mock-llm", 8080, timeout=10)


def test_port_forward_gives_up_after_its_timeout(fake_kubectl):
    fake_kubectl("exec sleep 60")
    with pytest.raises(AssertionError, match=r"no 'Forwarding from' line \(not within 1 s\)"):
        suite.PortForward("mock-llm", 8080, timeout=1)


def test_kubectl_failure_names_the_command_and_the_end_of_its_error(fake_kubectl):
    fake_kubectl('for i in 1 2 3 4; do echo "E0 retry $i" >&2; done\necho "Error: nope" >&2\nexit 1')
    with pytest.raises(AssertionError) as failure:
        suite.kubectl("get", "x")
    assert str(failure.value) == "`kubectl get x` failed (exit 1): E0 retry 3 | E0 retry 4 | Error: nope"


# ---- the AIAnalysis ----


def test_aianalysis_is_the_go_tests_production_incident():
    obj = suite.aianalysis_object("abc12345", NS)
    assert obj["metadata"] == {"name": "e2e-prod-incident-abc12345", "namespace": NS}
    spec = obj["spec"]
    assert spec["remediationRequestRef"] == {"name": "e2e-remediation-abc12345", "namespace": NS}
    signal = spec["analysisRequest"]["signalContext"]
    assert (signal["signalName"], signal["environment"], signal["severity"]) == (
        "CrashLoopBackOff",
        "production",
        "warning",
    )
    assert spec["analysisRequest"]["analysisTypes"] == ["Investigation", "RootCause", "WorkflowSelection"]
    json.dumps(obj)  # JSON on kubectl's stdin


@pytest.mark.skipif(not KUBERNAUT_CHECKOUT, reason="KUBERNAUT_CHECKOUT names no Kubernaut checkout")
def test_aianalysis_fits_the_checkouts_crd():
    from tasks.libs.checks import crdschema

    crd = yaml.safe_load(
        Path(KUBERNAUT_CHECKOUT, "config/crd/bases/kubernaut.ai_aianalyses.yaml").read_text()
    )
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    assert crd["spec"]["group"] + "/v1alpha1" == suite.aianalysis_object("x", NS)["apiVersion"]
    assert (
        crdschema.problems(suite.aianalysis_object("abc12345", NS), version["schema"]["openAPIV3Schema"])
        == []
    )


def completed_status(workflow_id):
    conditions = ["Ready", "InvestigationComplete", "AnalysisComplete", "WorkflowResolved"]
    return {
        "phase": "Completed",
        "completedAt": "2026-08-22T10:00:00Z",
        "approval": {
            "approvalRequired": True,
            "approvalReason": "Production environment requires manual approval",
        },
        "rcaResult": {
            "rootCauseAnalysis": {
                "summary": "Container failing due to invalid configuration directive",
                "severity": "high",
                "signalType": "CrashLoopBackOff",
                "contributingFactors": ["invalid_configuration_directive", "recent_deployment_update"],
                "remediationTarget": {"kind": "Deployment", "name": "worker", "namespace": "staging"},
            },
            "selectedWorkflow": {"workflowId": workflow_id, "workflowName": "crashloop-config-fix-v1"},
        },
        "conditions": [{"type": kind, "status": "True"} for kind in conditions],
    }


def test_a_completed_analysis_has_no_problems():
    assert suite.analysis_problems(completed_status("wf-1"), "wf-1") == []


def test_analysis_problems_say_what_was_expected_and_what_came_back():
    status = completed_status("wf-other")
    status["approval"]["approvalRequired"] = False
    status["conditions"][0]["status"] = "False"
    problems = suite.analysis_problems(status, "wf-1")
    assert problems == [
        "expected status.approval.approvalRequired true, got "
        "{'approvalRequired': False, 'approvalReason': 'Production environment requires manual approval'}",
        "expected status.rcaResult.selectedWorkflow.workflowId wf-1, got 'wf-other'",
        "expected status.condition Ready True, got 'False'",
    ]


def test_a_failed_analysis_lists_every_miss():
    problems = suite.analysis_problems({"phase": "Failed", "reason": "InvestigationFailed"}, "wf-1")
    assert problems[0] == "expected status.phase Completed, got 'Failed'"
    assert len(problems) == 13


def test_is_final_and_trail_complete():
    assert suite.is_final({"status": {"phase": "Completed"}}) and suite.is_final(
        {"status": {"phase": "Failed"}}
    )
    assert not suite.is_final({"status": {"phase": "Investigating"}}) and not suite.is_final({})
    transitions = ["aianalysis.phase.transition"] * 3
    assert suite.trail_complete(transitions + ["aianalysis.analysis.completed", "aianalysis.aiagent.call"])
    assert not suite.trail_complete(transitions[:2] + ["aianalysis.analysis.completed"])
    assert not suite.trail_complete(transitions)


def test_wait_for_returns_the_value_or_names_the_last_one(monkeypatch):
    values = iter([0, 0, 3])
    assert suite.wait_for("three", lambda: next(values), bool, timeout=5, interval=0) == 3
    with pytest.raises(AssertionError, match=r"phase Completed: not seen within 0 s; last: 'Pending'"):
        suite.wait_for(
            "phase Completed", lambda: "Pending", lambda v: v == "Completed", timeout=0, interval=0
        )


# ---- TLS, with the certs step's certificates ----


def test_ca_file_is_beside_the_kubeconfig():
    assert suite.ca_file_for("/x/clusters/aianalysis-e2e/kubeconfig") == Path(
        "/x/clusters/aianalysis-e2e/inter-service-ca.pem"
    )


def make_certificates(folder: Path) -> tuple:
    """(CA PEM, leaf cert file, leaf key file) for data-storage-service, as certs.py makes them."""
    ca, objects = certs.make(folder, {"data-storage-service": "datastorage-tls"}, "", NS)
    leaf = objects[0]["stringData"]
    (folder / "leaf.crt").write_text(leaf["tls.crt"])
    (folder / "leaf.key").write_text(leaf["tls.key"])
    return ca, folder / "leaf.crt", folder / "leaf.key"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/readyz":
            code, body = 200, {"status": "ready"}
        elif self.headers.get("Authorization") == "Bearer good":
            code, body = 200, {"data": [{"event_type": "x"}]}
        else:
            code, body = 401, {"title": "Unauthorized"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def https_server():
    """A local HTTPS server with a leaf of the certs step's making; (its URL, the CA PEM)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        ca, crt, key = make_certificates(Path(tmp))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(crt, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"https://localhost:{server.server_address[1]}", ca
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def kubeconfig_with_ca(tmp_path, monkeypatch, https_server):
    """KUBECONFIG in a folder whose inter-service-ca.pem is the server's CA (where certs.py writes it)."""
    (tmp_path / "inter-service-ca.pem").write_text(https_server[1])
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    suite.ca_context.cache_clear()
    yield
    suite.ca_context.cache_clear()


def test_tls_context_trusts_the_inter_service_ca_and_checks_the_name(https_server):
    url, ca = https_server
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    for name in ("localhost", "data-storage-service.kubernaut-system.svc.cluster.local"):
        with socket.create_connection((host, port), timeout=5) as raw:
            with suite.tls_context(ca).wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection((host, port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            suite.tls_context(ca).wrap_socket(raw, server_hostname="kubernaut-agent")


def test_fetch_refuses_a_server_of_another_ca(https_server, tmp_path, monkeypatch):
    url, _ = https_server
    other_ca, _, _ = make_certificates(tmp_path)
    (tmp_path / "inter-service-ca.pem").write_text(other_ca)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    suite.ca_context.cache_clear()
    try:
        with pytest.raises(AssertionError, match=r"GET .*/readyz: no answer \(.*CERTIFICATE_VERIFY_FAILED"):
            suite.fetch(url + "/readyz", tls=True)
    finally:
        suite.ca_context.cache_clear()


def test_fetch_and_answer_over_https_with_the_ca_beside_kubeconfig(https_server, kubeconfig_with_ca):
    url, _ = https_server
    assert json.loads(suite.answer(url + "/readyz", tls=True)) == {"status": "ready"}
    assert suite.fetch(url + "/api/v1/audit/events", tls=True)[0] == 401
    assert suite.answer(url + "/api/v1/audit/events", 401, tls=True)
    assert json.loads(suite.answer(url + "/api/v1/audit/events", bearer="good", tls=True))["data"]
    with pytest.raises(
        AssertionError, match=r"GET .*/api/v1/audit/events: expected 200, got 401: .*Unauthorized"
    ):
        suite.answer(url + "/api/v1/audit/events", tls=True)


def test_fetch_without_an_answer_fails_with_the_url():
    with pytest.raises(AssertionError, match=r"GET http://127.0.0.1:9/readyz: no answer"):
        suite.fetch("http://127.0.0.1:9/readyz")
