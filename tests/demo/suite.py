"""The demo stack's end-to-end suite (demo.yaml `test:`), run by `invoke e2e.test` and
`invoke e2e.run` once the stack is up. A plain unittest script to read and copy: kindling tells
a suite where things are through its environment (README, "The suite, coverage and the report"):

- E2E_URL_CONTROLLER: the controller's host URL (its NodePort, mapped by the kind config);
- KUBECONFIG and E2E_NAMESPACE: the cluster and namespace the stack runs in.
"""

import os
import subprocess
import unittest
import urllib.request

URL = os.environ.get("E2E_URL_CONTROLLER", "http://localhost:8180")
NAMESPACE = os.environ.get("E2E_NAMESPACE", "kindling-demo")


def get(path: str) -> str:
    with urllib.request.urlopen(URL + path, timeout=10) as response:
        return response.read().decode().strip()


def in_pod(deployment: str, *command: str) -> str:
    """Run a command in a running container of the deployment (kubectl exec), return its output."""
    result = subprocess.run(
        ["kubectl", "exec", "-n", NAMESPACE, f"deployment/{deployment}", "--", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl exec {deployment} {' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


class ControllerFromTheHost(unittest.TestCase):
    def test_health_answers(self):
        self.assertEqual(get("/health"), "ok")

    def test_version_names_the_service(self):
        self.assertTrue(get("/version").startswith("controller "))

    def test_its_configmap_arrived(self):
        self.assertEqual(get("/config/greeting"), "hello from the kindling demo controller")


class InsideTheCluster(unittest.TestCase):
    def test_the_controller_resolves_its_upstreams_by_service_name(self):
        for upstream in ("store", "brain"):
            answer = in_pod(
                "controller", "/bin/busybox", "nslookup", f"{upstream}.{NAMESPACE}.svc.cluster.local"
            )
            self.assertIn("Address", answer.split("Name:")[-1], answer)

    def test_each_service_serves_its_own_version(self):
        for service in ("store", "brain", "controller"):
            version = in_pod(service, "/bin/busybox", "cat", "/www/version")
            self.assertTrue(version.startswith(f"{service} "), version)


if __name__ == "__main__":
    unittest.main(verbosity=2)
