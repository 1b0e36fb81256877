"""Seed Kubernaut's workflow catalog and write mock-llm's scenarios (the kindling `seed` run step).

Kubernaut's AIAnalysis harness runs no AuthWebhook, so it registers the catalog itself
(test/infrastructure/aianalysis_e2e.go CreateAIAnalysisClusterHybrid, phase 7b):
  - ActionType CRs, then their status set as AuthWebhook would: registered, catalogStatus Active
    (actiontype_e2e.go SeedActionTypesViaCRD);
  - RemediationWorkflow CRs from test/fixtures/workflows, then their status: the content-derived
    workflow id and hash, catalogStatus Active (workflow_seeding_direct_crd.go
    seedWorkflowContentViaDirectCRDCreation);
  - the workflow ids handed to mock-llm's scenarios (shared_e2e.go DeployMockLLMInNamespace).
kindling applies both kinds of CR from the seed service's manifests first; this script sets their
status and prints the scenarios as the mock-llm-scenarios ConfigMap's data (JSON on stdout).
Re-running it changes nothing that is already right.

    seed.py --template mock-llm-scenarios.yaml --environments staging,production,test
"""

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

import kube
import workflowid

REGISTERED_BY = "test-infrastructure-seeder"  # the harness's value
PLACEHOLDER = re.compile(r"\$\{(namespace|workflow_ids|workflow_id:([A-Za-z0-9._-]+))\}")


def activate_action_types(ns: str) -> int:
    """Mirror AuthWebhook's admission status on every ActionType (SeedActionTypesViaCRD)."""
    status = {"registered": True, "catalogStatus": "Active", "registeredBy": REGISTERED_BY}
    items = kube.get_items("actiontypes.kubernaut.ai", ns)
    for item in items:
        current = item.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            continue
        kube.kubectl(
            "patch",
            "actiontypes.kubernaut.ai",
            item["metadata"]["name"],
            "-n",
            ns,
            "--type=merge",
            "--subresource=status",
            "-p",
            json.dumps({"status": status}),
        )
    return len(items)


def register_workflows(ns: str) -> dict:
    """Stamp each RemediationWorkflow with its content-derived id, as AuthWebhook would;
    {name: workflow id}."""
    ids = {}
    for item in kube.get_items("remediationworkflows.kubernaut.ai", ns):
        name = item["metadata"]["name"]
        digest = workflowid.content_hash(item)
        ids[name] = workflowid.workflow_id(digest)
        current = item.get("status") or {}
        if (current.get("workflowId"), current.get("contentHash"), current.get("catalogStatus")) == (
            ids[name],
            digest,
            "Active",
        ):
            continue
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "workflowId": ids[name],
            "contentHash": digest,
            "catalogStatus": "Active",
            "registeredBy": REGISTERED_BY,
            "registeredAt": now,
        }
        kube.kubectl(
            "patch",
            "remediationworkflows.kubernaut.ai",
            name,
            "-n",
            ns,
            "--type=merge",
            "--subresource=status",
            "-p",
            json.dumps({"status": status}),
        )
    return ids


def scenario_keys(ids: dict, environments: list) -> list:
    """("<workflow>:<environment>", id) pairs, production last (SortedWorkflowUUIDKeys)."""
    pairs = [(f"{name}:{env}", wid) for name, wid in ids.items() for env in environments]
    return sorted(pairs, key=lambda p: (p[0].endswith(":production"), p[0]))


def resolve_id(ids: dict, name: str) -> str:
    """resolveWorkflowUUID: the seeded id, else the name itself."""
    return ids.get(name, name)


def render_scenarios(template: str, ns: str, ids: dict, environments: list) -> str:
    block = "".join(f'  {key}:\n    workflow_id: "{wid}"\n' for key, wid in scenario_keys(ids, environments))

    def fill(match):
        if match.group(1) == "namespace":
            return ns
        if match.group(1) == "workflow_ids":
            return block.rstrip("\n")
        return resolve_id(ids, match.group(2))

    return PLACEHOLDER.sub(fill, template)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", required=True, type=Path, help="mock-llm scenarios template")
    parser.add_argument(
        "--environments", required=True, help="comma-separated environments each workflow is keyed under"
    )
    args = parser.parse_args()
    environments = [e for e in args.environments.split(",") if e]
    try:
        template = args.template.read_text(encoding="utf-8")
    except OSError as exc:
        raise kube.StepError(f"--template {args.template}: {exc.strerror}") from None
    ns = kube.namespace()
    count = activate_action_types(ns)
    ids = register_workflows(ns)
    if not ids:
        raise kube.StepError(
            f"no RemediationWorkflow in namespace {ns}: the seed service's manifests "
            "must list the workflow fixtures"
        )
    print(f"seeded {count} action types and {len(ids)} workflows in {ns}", file=sys.stderr)
    json.dump({"scenarios.yaml": render_scenarios(template, ns, ids, environments)}, sys.stdout)


if __name__ == "__main__":
    kube.main(main)
