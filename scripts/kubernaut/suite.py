"""The AIAnalysis stack's end-to-end suite (e2e.yaml), run by `invoke e2e.test` once `e2e.setup`
brought the stack up. A plain unittest script, standard library only; kubectl reaches the cluster
KUBECONFIG names. Each check follows one of Kubernaut's own tests (paths at d5a4a870):

1. Data Storage (DataStorage*): /readyz on the health port, as test/e2e/aianalysis/
   01_health_endpoints_test.go; the API over HTTPS trusted through the inter-service CA, as the
   suite's host clients do (test/infrastructure/interservice_tls.go NewTLSAwareTransport, CA file
   beside the kubeconfig), with a ServiceAccount bearer token (suite_test.go: aianalysis-e2e-sa,
   DD-AUTH-014 TokenReview + SubjectAccessReview, pkg/datastorage/server/server_routes.go).
2. The seeded catalog (SeededCatalog*): Data Storage no longer lists workflows (server_routes.go
   registerWorkflowRoutes, DD-WORKFLOW-019): the Agent's catalog reads RemediationWorkflow CRs by
   status.workflowId (internal/kubernautagent/workflowcatalog/cache.go). So the ids mock-llm was
   given (ConfigMap mock-llm-scenarios) must be exactly those the CRs carry, all Active.
3. mock-llm (MockLLM*), through `kubectl port-forward`: GET /health and a chat completion for an
   OOMKilled signal, which must pick the seeded oomkill-increase-memory-v1 id
   (test/services/mock-llm: handlers/router.go, scenarios/scenario_oomkilled.go, registry_default.go).
4. The Kubernaut Agent (KubernautAgent*): /healthz, /readyz, /config on its health port
   (01_health_endpoints_test.go; cmd/kubernautagent/health.go); its HTTPS API refuses a bad token
   with 401 and audits it to Data Storage (test/e2e/kubernautagent/audit_pipeline_test.go
   E2E-KA-1401-002) and lets in the ServiceAccount the stack authorizes (aianalysis-controller).
5. AIAnalysis (AIAnalysis*): the controller's /healthz and /readyz (01_health_endpoints_test.go);
   the production CrashLoopBackOff AIAnalysis of 03_full_flow_test.go ("should complete full
   4-phase reconciliation cycle") reaches Completed with what that test asserts, the seeded
   crashloop-config-fix-v1 workflow selected, and its audit trail in Data Storage
   (05_audit_trail_test.go).

Settings (environment), set by kindling (URLs from the Kind config's port mappings): E2E_NAMESPACE,
E2E_URL_DATA_STORAGE_SERVICE, E2E_URL_KUBERNAUT_AGENT, and the health ports'
E2E_URL_DATA_STORAGE_SERVICE_HEALTH, E2E_URL_KUBERNAUT_AGENT_HEALTH and
E2E_URL_AIANALYSIS_CONTROLLER_HEALTH; E2E_RUN_DIR (the completed AIAnalysis is written there). Also
E2E_DS_CLIENT_SA, E2E_KA_CLIENT_SA, E2E_AIANALYSIS_TIMEOUT and E2E_AUDIT_TIMEOUT (seconds).
"""

import functools
import json
import os
import re
import select
import ssl
import subprocess
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

NAMESPACE = os.environ.get("E2E_NAMESPACE", "kubernaut-system")
DS_URL = os.environ.get("E2E_URL_DATA_STORAGE_SERVICE", "https://localhost:8091")
DS_HEALTH_URL = os.environ.get("E2E_URL_DATA_STORAGE_SERVICE_HEALTH", "http://localhost:30281")
KA_URL = os.environ.get("E2E_URL_KUBERNAUT_AGENT", "https://localhost:8088")
KA_HEALTH_URL = os.environ.get("E2E_URL_KUBERNAUT_AGENT_HEALTH", "http://localhost:28088")
AA_HEALTH_URL = os.environ.get("E2E_URL_AIANALYSIS_CONTROLLER_HEALTH", "http://localhost:8184")
DS_CLIENT_SA = os.environ.get("E2E_DS_CLIENT_SA", "aianalysis-e2e-sa")  # bound to data-storage-client
KA_CLIENT_SA = os.environ.get("E2E_KA_CLIENT_SA", "aianalysis-controller")  # bound to kubernaut-agent-client
AIANALYSIS_TIMEOUT = float(os.environ.get("E2E_AIANALYSIS_TIMEOUT", "180"))
AUDIT_TIMEOUT = float(os.environ.get("E2E_AUDIT_TIMEOUT", "60"))

SEVERITIES = ("critical", "high", "warning", "info", "unknown")
CONDITIONS = ("Ready", "InvestigationComplete", "AnalysisComplete", "WorkflowResolved")
CRASHLOOP_FACTOR = "invalid_configuration_directive"  # mock-llm's crashloop scenario
_SCENARIO_KEY = re.compile(r"^  ([A-Za-z0-9._-]+):([A-Za-z0-9._-]+):\s*$")
_SCENARIO_ID = re.compile(r"""^    workflow_id:\s*["']?([0-9A-Za-z-]+)["']?\s*$""")
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


# ---- pure helpers (tests/kubernaut/test_kubernaut_suite.py) ----


def ca_file_for(kubeconfig: str) -> Path:
    """Where the certs step writes the CA: beside the kubeconfig (the harness's InterServiceCAPath)."""
    return Path(kubeconfig).parent / "inter-service-ca.pem"


def tls_context(ca_pem: str) -> ssl.SSLContext:
    """Trust the inter-service CA only, and check the name (the leaves carry localhost and 127.0.0.1)."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def seeded_ids(scenarios_yaml: str) -> dict:
    """{workflow name: id} from mock-llm's scenarios: the `<workflow>:<environment>` entries seed.py
    writes, each followed by its workflow_id. A workflow given two ids is an error."""
    ids, key = {}, None
    for line in scenarios_yaml.splitlines():
        if match := _SCENARIO_KEY.match(line):
            key = match.group(1)
        elif key and (match := _SCENARIO_ID.match(line)):
            if ids.setdefault(key, match.group(1)) != match.group(1):
                raise ValueError(f"workflow {key} has two ids: {ids[key]} and {match.group(1)}")
            key = None
        else:
            key = None
    return ids


def forwarded_port(line: str):
    """The local port of a `kubectl port-forward` "Forwarding from 127.0.0.1:PORT -> ..." line."""
    match = _FORWARDING.search(line)
    return int(match.group(1)) if match else None


def chat_request(signal: str) -> dict:
    """A minimal OpenAI chat completion; mock-llm reads "Signal Name: X" (scenarios/match_helpers.go)."""
    return {
        "model": "mock-model",
        "messages": [
            {"role": "system", "content": "You are a Kubernetes incident analyst."},
            {
                "role": "user",
                "content": f"Signal Name: {signal}\nSeverity: critical\nEnvironment: production",
            },
        ],
    }


def aianalysis_object(suffix: str, namespace: str) -> dict:
    """03_full_flow_test.go's production incident (CrashLoopBackOff, approval required), as JSON."""
    return {
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "AIAnalysis",
        "metadata": {"name": f"e2e-prod-incident-{suffix}", "namespace": namespace},
        "spec": {
            "remediationRequestRef": {"name": f"e2e-remediation-{suffix}", "namespace": namespace},
            "remediationId": "e2e-rem-001",
            "analysisRequest": {
                "signalContext": {
                    "fingerprint": "e2e-fingerprint-001",
                    "severity": "warning",
                    "signalName": "CrashLoopBackOff",
                    "environment": "production",
                    "businessPriority": "P1",
                    "targetResource": {
                        "kind": "Deployment",
                        "name": "payment-service",
                        "namespace": "payments",
                    },
                    "enrichmentResults": {
                        "kubernetesContext": {
                            "customLabels": {"team": ["payments"], "cost_center": ["revenue"]}
                        }
                    },
                },
                "analysisTypes": ["Investigation", "RootCause", "WorkflowSelection"],
            },
        },
    }


def analysis_problems(status: dict, workflow_id: str) -> list:
    """What 03_full_flow_test.go asserts on a completed production analysis, plus the selected
    workflow being the seeded one (workflow_id): one sentence per miss."""
    rca = status.get("rcaResult") or {}
    root = rca.get("rootCauseAnalysis") or {}
    approval = status.get("approval") or {}
    selected = (rca.get("selectedWorkflow") or {}).get("workflowId")
    factors = root.get("contributingFactors") or []
    target = (root.get("remediationTarget") or {}).get("kind")
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    checks = [  # (what is expected, whether it holds, what came back)
        ("phase Completed", status.get("phase") == "Completed", status.get("phase")),
        ("approval.approvalRequired true", approval.get("approvalRequired") is True, approval),
        ("approval.approvalReason set", bool(approval.get("approvalReason")), approval),
        (f"rcaResult.selectedWorkflow.workflowId {workflow_id}", selected == workflow_id, selected),
        ("completedAt set", bool(status.get("completedAt")), status.get("completedAt")),
        ("rcaResult.rootCauseAnalysis.summary set", bool(root.get("summary")), root.get("summary")),
        (
            "rcaResult.rootCauseAnalysis.severity a severity",
            root.get("severity") in SEVERITIES,
            root.get("severity"),
        ),
        ("contributingFactors with invalid_configuration_directive", CRASHLOOP_FACTOR in factors, factors),
        ("rootCauseAnalysis.remediationTarget.kind Deployment", target == "Deployment", target),
    ]
    checks += [(f"condition {c} True", conditions.get(c) == "True", conditions.get(c)) for c in CONDITIONS]
    return [f"expected status.{what}, got {got!r}" for what, holds, got in checks if not holds]


def is_final(aianalysis: dict) -> bool:
    return (aianalysis.get("status") or {}).get("phase") in ("Completed", "Failed")


def trail_complete(event_types: list) -> bool:
    """05_audit_trail_test.go's happy path: the completion and the three phase transitions."""
    return (
        "aianalysis.analysis.completed" in event_types
        and event_types.count("aianalysis.phase.transition") >= 3
    )


# ---- the cluster and HTTP ----


def kubectl(*args: str, stdin: str | None = None, timeout: int = 60) -> str:
    argv = ["kubectl", *args]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise AssertionError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {tail}")
    return done.stdout


def kube_json(*args: str) -> dict:
    return json.loads(kubectl("get", *args, "-n", NAMESPACE, "-o", "json"))


@functools.cache
def token(service_account: str) -> str:
    """A TokenRequest token (the Go suites' GetServiceAccountToken); never printed."""
    return kubectl("create", "token", service_account, "-n", NAMESPACE).strip()


@functools.cache
def ca_context() -> ssl.SSLContext:
    """The CA file the certs step wrote beside KUBECONFIG, else the inter-service-ca ConfigMap."""
    path = ca_file_for(os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")))
    if path.is_file():
        return tls_context(path.read_text())
    return tls_context(kube_json("configmap", "inter-service-ca")["data"]["ca.crt"])


def fetch(url: str, method: str = "GET", body=None, bearer: str | None = None, tls: bool = False):
    """(status, text) of one request; an HTTP error status is an answer, no connection a failure."""
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20, context=ca_context() if tls else None) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        raise AssertionError(f"{method} {url}: no answer ({getattr(error, 'reason', error)})") from None


def answer(url: str, wanted: int = 200, method: str = "GET", **options) -> str:
    """The body of a request that must come back with status `wanted`."""
    status, text = fetch(url, method, **options)
    if status != wanted:
        raise AssertionError(f"{method} {url}: expected {wanted}, got {status}: {text[:500]}")
    return text


def audit_events(**query) -> list:
    """Data Storage's GET /api/v1/audit/events (the Go suites' QueryAuditEvents) as aianalysis-e2e-sa."""
    url = f"{DS_URL}/api/v1/audit/events?{urllib.parse.urlencode(query)}"
    return json.loads(answer(url, bearer=token(DS_CLIENT_SA), tls=True)).get("data") or []


def wait_for(what: str, probe, done, timeout: float, interval: float = 2.0, show=repr):
    """Poll probe() until done(its value); fail naming what and the last value seen (show(value))."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not seen within {timeout:.0f} s; last: {show(value)}")
        time.sleep(interval)


class PortForward:
    """`kubectl port-forward` to a Service on a free local port, until stop()."""

    def __init__(self, service: str, port: int, timeout: float = 30.0):
        argv = ["kubectl", "port-forward", "-n", NAMESPACE, f"service/{service}", f":{port}"]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = self.process.stdout.readline().decode(errors="replace") if ready else ""
            if ready and not line:  # kubectl closed its output: it is exiting
                break
            if line.strip():
                seen.append(line.strip())
            if (local := forwarded_port(line)) is not None:
                self.url = f"http://127.0.0.1:{local}"
                return
        try:
            exited = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            exited = None
        self.stop()
        ended = f"kubectl exited {exited}" if exited is not None else f"not within {timeout:.0f} s"
        raise AssertionError(
            f"`{' '.join(argv)}`: no 'Forwarding from' line ({ended}): {' | '.join(seen[-3:])}"
        )

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


def mock_llm_ids() -> dict:
    return seeded_ids(kube_json("configmap", "mock-llm-scenarios")["data"]["scenarios.yaml"])


# ---- the checks ----


class DataStorage(unittest.TestCase):
    def test_health_port_is_ready(self):
        answer(f"{DS_HEALTH_URL}/readyz")

    def test_api_serves_tls_from_the_inter_service_ca(self):
        answer(f"{DS_URL}/readyz", tls=True)  # outside /api/v1: no token needed (server_routes.go)

    def test_api_refuses_a_request_without_token(self):
        answer(f"{DS_URL}/api/v1/audit/events?limit=1", 401, tls=True)

    def test_api_answers_the_e2e_service_account(self):
        self.assertIsInstance(audit_events(limit=5), list)


class SeededCatalog(unittest.TestCase):
    def test_mock_llm_ids_are_the_catalogs(self):
        given = mock_llm_ids()
        crs = {
            i["metadata"]["name"]: i.get("status") or {}
            for i in kube_json("remediationworkflows.kubernaut.ai")["items"]
        }
        self.assertTrue(given, "ConfigMap mock-llm-scenarios: expected workflow ids, found none")
        carried = {name: status.get("workflowId") for name, status in crs.items()}
        self.assertEqual(
            given, carried, "workflow ids: mock-llm's (ConfigMap) vs the RemediationWorkflows' status"
        )
        inactive = {
            name: s.get("catalogStatus") for name, s in crs.items() if s.get("catalogStatus") != "Active"
        }
        self.assertEqual(inactive, {}, "RemediationWorkflows whose catalogStatus is not Active")


class MockLLM(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.forward = PortForward("mock-llm", 8080)
        cls.addClassCleanup(cls.forward.stop)

    def test_health(self):
        text = answer(f"{self.forward.url}/health")
        self.assertEqual(json.loads(text).get("status"), "ok", f"GET /health: {text}")

    def test_chat_completion_selects_the_seeded_workflow(self):
        expected = mock_llm_ids().get("oomkill-increase-memory-v1")
        text = answer(
            f"{self.forward.url}/v1/chat/completions", method="POST", body=chat_request("OOMKilled")
        )
        content = json.loads(text)["choices"][0]["message"]["content"]
        try:
            chosen = (json.loads(content).get("selected_workflow") or {}).get("workflow_id")
        except ValueError:
            self.fail(f"POST /v1/chat/completions: expected the analysis as JSON text, got {content[:500]}")
        self.assertEqual(
            chosen, expected, f"selected_workflow.workflow_id for OOMKilled; answer: {content[:500]}"
        )


class KubernautAgent(unittest.TestCase):
    def test_health_and_readiness(self):
        answer(f"{KA_HEALTH_URL}/healthz")
        ready = json.loads(answer(f"{KA_HEALTH_URL}/readyz"))
        self.assertEqual(ready.get("status"), "ready", f"GET /readyz: {ready}")

    def test_config_names_the_agent_and_its_model(self):
        config = json.loads(answer(f"{KA_HEALTH_URL}/config"))
        self.assertEqual(config.get("service"), "kubernaut-agent", f"GET /config: {config}")
        self.assertTrue(config.get("llm_model"), f"GET /config: expected an llm_model, got {config}")

    def test_api_refuses_a_bad_token_and_audits_it(self):
        path = f"/api/v1/kindling-suite-{uuid.uuid4().hex[:8]}"
        answer(KA_URL + path, 401, bearer="invalid-token-kindling-suite", tls=True)

        def audited():
            events = audit_events(event_type="aiagent.auth.failure", since="1h", limit=1000)
            return [e for e in events if (e.get("event_data") or {}).get("path") == path]

        wait_for(f"aiagent.auth.failure event for {path} in Data Storage", audited, bool, AUDIT_TIMEOUT)

    def test_api_lets_in_the_authorized_service_account(self):
        # Past TokenReview and SubjectAccessReview, a path no route serves is chi's 404.
        answer(f"{KA_URL}/api/v1/kindling-suite-probe", 404, bearer=token(KA_CLIENT_SA), tls=True)


class AIAnalysis(unittest.TestCase):
    def test_controller_health_and_readiness(self):
        text = answer(f"{AA_HEALTH_URL}/healthz")
        self.assertTrue(any(w in text for w in ("ok", "healthy", "alive")), f"GET /healthz: {text[:300]}")
        answer(f"{AA_HEALTH_URL}/readyz")

    def test_production_incident_completes_with_the_seeded_workflow(self):
        expected = mock_llm_ids().get("crashloop-config-fix-v1")
        obj = aianalysis_object(uuid.uuid4().hex[:8], NAMESPACE)
        name = obj["metadata"]["name"]
        kind = "aianalyses.kubernaut.ai"
        self.addCleanup(kubectl, "delete", kind, name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false")
        # The spec is immutable: created (as the Go test does), never applied over.
        kubectl("create", "-f", "-", stdin=json.dumps(obj))

        current = wait_for(
            f"AIAnalysis {name} in phase Completed or Failed",
            lambda: kube_json(kind, name),
            is_final,
            AIANALYSIS_TIMEOUT,
            1.0,
            lambda current: json.dumps(current.get("status"), indent=1),
        )
        if os.environ.get("E2E_RUN_DIR"):
            Path(os.environ["E2E_RUN_DIR"], f"aianalysis-{name}.json").write_text(
                json.dumps(current, indent=1)
            )
        status = current.get("status") or {}
        problems = analysis_problems(status, expected)
        self.assertEqual(problems, [], f"AIAnalysis {name}; status: {json.dumps(status, indent=1)[:3000]}")

        correlation = obj["spec"]["remediationRequestRef"]["name"]  # DD-AUDIT-CORRELATION-001

        def trail():
            events = audit_events(correlation_id=correlation, event_category="analysis", limit=100)
            return sorted(e.get("event_type") for e in events)

        wait_for(f"audit trail of {correlation}", trail, trail_complete, AUDIT_TIMEOUT)


if __name__ == "__main__":
    unittest.main(verbosity=2)
