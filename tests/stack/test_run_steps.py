"""Run steps (`services.X.run`): a command on the host or a Job in the cluster, run once the services it
depends on are ready, whose output becomes a ConfigMap or a file later services use.

The schema and the pure parts first; then e2e.setup on the real test environment (real kind, kubectl,
podman), each test in a namespace of its own on the session's shared cluster.
"""

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import invoke

from tasks.libs.errors import StackError
from tasks.libs.samples import manifests
from tasks.libs.stack import runspec
from tasks.libs.stack.model import load_stack


def write_stack(folder: Path, services: str) -> Path:
    (folder / "seed").mkdir(parents=True, exist_ok=True)
    (folder / "seed" / "job.yaml").write_text(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: seed}\n"
        "spec: {template: {spec: {restartPolicy: Never, containers: [{name: s, image: db}]}}}\n"
    )
    (folder / "seed" / "two.yaml").write_text(
        "kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n---\n"
        + (folder / "seed" / "job.yaml").read_text()
    )
    path = folder / "stack.yaml"
    path.write_text(
        "name: rs\nservices:\n  db: {image: docker.io/library/postgres:16}\n"
        + textwrap.indent(textwrap.dedent(services), "  ")
    )
    return path


def stack_error(tmp_path, services) -> StackError:
    with pytest.raises(StackError) as caught:
        load_stack(write_stack(tmp_path, services), env={})
    return caught.value


# ---- the schema -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "services, field, words",
    [
        ("seed: {run: [sh]}", "services.seed.run", "must be a mapping"),
        ("seed: {run: {}}", "services.seed.run", "exactly one of `command`"),
        ("seed: {run: {command: [sh], job: seed/job.yaml}}", "services.seed.run", "exactly one of `command`"),
        ("seed: {run: {command: 'python3 seed.py'}}", "services.seed.run.command", "not a shell string"),
        ("seed: {run: {command: []}}", "services.seed.run.command", "non-empty list"),
        ("seed: {run: {command: [sh, {a: 1}]}}", "services.seed.run.command", "non-empty list"),
        ("seed: {run: {comand: [sh]}}", "services.seed.run.comand", "did you mean 'command'"),
        (
            "seed: {run: {command: [sh], timeout: -5}}",
            "services.seed.run.timeout",
            "positive number of seconds",
        ),
        ("seed: {run: {command: [sh], env: {A: [1]}}}", "services.seed.run.env.A", "string or number"),
        (
            "seed: {run: {job: seed/job.yaml, env: {A: b}}}",
            "services.seed.run.env",
            "applies to `command` only",
        ),
        ("seed: {run: {job: seed/missing.yaml}}", "services.seed.run.job", "does not exist"),
        ("seed: {run: {job: seed/two.yaml}}", "services.seed.run.job", "exactly one Job"),
        (
            "seed: {run: {command: [sh], configmap: Bad_Name}}",
            "services.seed.run.configmap",
            "not a valid name",
        ),
        (
            "seed: {run: {command: [sh], file: /tmp/ids.json}}",
            "services.seed.run.file",
            "inside the run folder",
        ),
        (
            "seed: {run: {command: [sh], file: ../ids.json}}",
            "services.seed.run.file",
            "inside the run folder",
        ),
        ("seed: {run: {command: [sh], keys: [a]}}", "services.seed.run.keys", "there is no `configmap`"),
        (
            "seed: {run: {command: [sh], configmap: ids, keys: ['a b']}}",
            "services.seed.run.keys",
            "ConfigMap key",
        ),
        ("seed: {run: {command: [sh]}, load: true}", "services.seed.load", "prebuilt `image` services"),
        ("seed: {depends_on: [db]}", "services.seed", "exactly one of `build`"),
    ],
)
def test_a_bad_run_section_names_the_field_and_the_fix(tmp_path, services, field, words):
    error = stack_error(tmp_path, services)
    assert error.field == field, str(error)
    assert words in str(error) and error.fix, str(error)
    assert str(error).startswith(str(tmp_path / "stack.yaml"))


def test_a_run_section_resolves_its_command_job_and_defaults(tmp_path):
    path = write_stack(
        tmp_path,
        """\
        seed:
          depends_on: [db]
          run:
            command: [sh, '${STACK_DIR}/seed/ids.sh', '${SEED_MODE:-full}', 3]
            env: {MODE: '${SEED_MODE:-fast}'}
            configmap: mock-llm-workflows
            keys: [workflow_ids]
            file: out/ids.json
        jobbed: {depends_on: [seed], run: {job: seed/job.yaml, timeout: 60}}
        """,
    )
    stack = load_stack(path, env={})
    seed, jobbed = stack.services["seed"], stack.services["jobbed"]
    assert not seed.built and seed.image == ""
    assert seed.run.command == ("sh", f"{tmp_path}/seed/ids.sh", "full", "3")
    assert seed.run.cwd == tmp_path and seed.run.timeout == runspec.DEFAULT_RUN_TIMEOUT
    assert seed.run.env == {"MODE": "fast"} and seed.run.file == "out/ids.json"
    assert (seed.run.configmap, seed.run.keys) == ("mock-llm-workflows", ("workflow_ids",))
    assert jobbed.run.job == tmp_path / "seed" / "job.yaml" and jobbed.run.timeout == 60
    assert stack.order() == ["db", "seed", "jobbed"]


# ---- the output and the inputs digest (pure) -------------------------------------------------------


def test_output_becomes_configmap_data_of_strings():
    assert runspec.configmap_data('{"ids": "a,b", "n": 3, "ok": true, "f": 1.5}') == {
        "ids": "a,b",
        "n": "3",
        "ok": "true",
        "f": "1.5",
    }
    assert runspec.configmap_data("workflow: wf-1\nversion: '2'\n", keys=["workflow"]) == {
        "workflow": "wf-1",
        "version": "2",
    }


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "must be a mapping"),
        ("[1, 2]", "must be a mapping"),
        ("just text", "must be a mapping"),
        ("{a: [1]}", "key 'a': the value must be a string"),
        ("{a: null}", "key 'a': the value must be a string"),
        ("{'a b': 1}", "is not a ConfigMap key"),
        ("{a: 1, b: [", "not YAML or JSON"),
        ("{other: 1}", "no key workflow"),
    ],
)
def test_output_that_cannot_be_configmap_data_says_why(text, words):
    with pytest.raises(runspec.OutputError, match=words.replace("[", r"\[")):
        runspec.configmap_data(text, keys=["workflow"])


def test_inputs_digest_follows_scripts_and_dependencies_not_the_timeout(tmp_path):
    script = tmp_path / "ids.sh"
    script.write_text("echo a\n")
    spec = runspec.RunSpec(tmp_path, command=("sh", "ids.sh"), timeout=10)
    deps = {"db": {"image": "localhost/p/db:1", "manifests": "m1", "run": "r1"}}
    first = runspec.inputs_digest(spec, [], deps)
    longer = runspec.RunSpec(tmp_path, command=("sh", "ids.sh"), timeout=99)
    assert runspec.inputs_digest(longer, [], deps) == first
    assert runspec.inputs_digest(spec, [], {"db": {**deps["db"], "image": "localhost/p/db:2"}}) != first
    assert runspec.inputs_digest(spec, [], {"db": {**deps["db"], "run": "r2"}}) != first  # rolled out again
    script.write_text("echo b\n")
    assert runspec.inputs_digest(spec, [], deps) != first  # the script the command runs changed


def test_consumers_of_a_run_output_get_its_digest_on_their_pod_templates(tmp_path):
    path = write_stack(
        tmp_path,
        """\
        seed: {depends_on: [db], run: {command: [sh], configmap: ids}}
        web: {image: docker.io/library/nginx:1, depends_on: [seed]}
        """,
    )
    stack = load_stack(path, env={})
    assert runspec.consumed_outputs(stack, "web", {}) == ""
    assert runspec.consumed_outputs(stack, "seed", {"db": {"output": "x"}}) == ""  # db is no run step
    one = runspec.consumed_outputs(stack, "web", {"seed": {"output": "o1"}})
    assert one and one != runspec.consumed_outputs(stack, "web", {"seed": {"output": "o2"}})
    docs = runspec.annotate_pod_templates(manifests("web", {}), one)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {runspec.OUTPUT_ANNOTATION: one}
    assert "annotations" not in next(d for d in docs if d["kind"] == "Service")["metadata"]


# ---- on the real test environment -------------------------------------------------------------------

SEED_SCRIPT = """\
set -e
echo "seeding $E2E_NAMESPACE on $E2E_CLUSTER" >&2
echo ran >> runs.txt
echo "$KUBECONFIG" > kubeconfig.txt
workflow=$(kubectl get configmap a-ids -n "$E2E_NAMESPACE" -o jsonpath='{.data.workflow}')
printf '{"workflow_id": "%s", "image_a": "%s", "count": 2}\\n' "$workflow" "$E2E_IMAGE_A"
"""


def outcomes(run_folder: Path) -> dict:
    return {s["id"]: s["outcome"] for s in json.loads((run_folder / "run.json").read_text())["steps"]}


class Seeded:
    """A stack on the shared cluster: `a` (built) holds ConfigMap a-ids; `seed` reads it with kubectl
    and writes ConfigMap seed-ids; `b` (built) mounts seed-ids and reads a key of it."""

    def __init__(self, maker, tools, testenv, shared, home):
        self.maker, self.testenv, self.home = maker, testenv, home
        self.namespace = maker.project
        self.kubeconfig = home / "clusters" / shared.name / "kubeconfig"
        path = maker.write({"a": {}, "b": {}}, cluster=shared.name, namespace=self.namespace)
        self.folder = path.parent
        self.env = {
            **tools.env,
            "E2E_STACK": str(path),
            "KINDLING_HOME": str(home),
            "KINDLING_MIN_FREE_DISK": "50MiB",
        }
        stack = yaml.safe_load(path.read_text())
        (self.folder / "seed.sh").write_text(SEED_SCRIPT)
        stack["services"]["seed"] = {
            "depends_on": ["a"],
            "run": {
                "command": ["sh", "seed.sh"],
                "env": {"SEED_TOKEN": "s3cr3t-seed-token"},
                "configmap": "seed-ids",
                "keys": ["workflow_id"],
                "file": "out/ids.json",
            },
        }
        stack["services"]["b"]["depends_on"] = ["seed"]
        path.write_text(yaml.safe_dump(stack, sort_keys=False))
        self.set_workflow("wf-1")
        docs = manifests("b", {})
        pod = docs[0]["spec"]["template"]["spec"]
        pod["containers"][0]["env"] = [
            {
                "name": "WORKFLOW_ID",
                "valueFrom": {"configMapKeyRef": {"name": "seed-ids", "key": "workflow_id"}},
            }
        ]
        pod["containers"][0]["volumeMounts"] = [{"name": "ids", "mountPath": "/etc/ids"}]
        pod["volumes"] = [{"name": "ids", "configMap": {"name": "seed-ids"}}]
        (self.folder / "manifests" / "b.yaml").write_text(yaml.safe_dump_all(docs))

    def set_workflow(self, workflow):
        docs = manifests("a", {}) + [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "a-ids"},
                "data": {"workflow": workflow},
            }
        ]
        (self.folder / "manifests" / "a.yaml").write_text(yaml.safe_dump_all(docs))

    def setup(self, *args):
        return invoke(["e2e.setup", *args], self.env)

    def last_run(self) -> Path:
        return sorted(self.home.glob("runs/*/run.json"), key=lambda p: p.stat().st_mtime)[-1].parent

    def outcomes(self) -> dict:
        return outcomes(self.last_run())

    def get(self, *args):
        return self.testenv.kubectl_json(self.kubeconfig, *args, "-n", self.namespace)

    def runs(self) -> int:
        return len((self.folder / "runs.txt").read_text().splitlines())


@pytest.fixture
def seeded(stack_maker, tools, testenv, shared_cluster, tmp_path):
    world = Seeded(stack_maker, tools, testenv, shared_cluster, tmp_path / "home")
    yield world
    testenv.kubectl(
        shared_cluster.kubeconfig, "delete", "namespace", world.namespace, "--wait=false", check=False
    )


def test_a_seeding_step_feeds_a_configmap_to_later_services_and_reruns_only_when_its_inputs_change(seeded):
    first = seeded.setup()
    assert first.returncode == 0, first.stdout + first.stderr
    outcomes = seeded.outcomes()
    assert (outcomes["deploy:seed"], outcomes["deploy:b"]) == ("ran", "ready"), outcomes
    image_a = seeded.get("get", "deployment", "a")["spec"]["template"]["spec"]["containers"][0]["image"]
    data = seeded.get("get", "configmap", "seed-ids")["data"]
    assert data == {"workflow_id": "wf-1", "image_a": image_a, "count": "2"}
    assert seeded.runs() == 1
    # The command got the cluster's own kubeconfig, and ran in the stack file's folder.
    assert (seeded.folder / "kubeconfig.txt").read_text().strip() == str(seeded.kubeconfig)
    assert json.loads((seeded.last_run() / "out" / "ids.json").read_text())["workflow_id"] == "wf-1"
    step_log = (seeded.last_run() / "logs" / "deploy-seed.log").read_text()
    assert f"seeding {seeded.namespace}" in step_log  # stderr kept in the step's log
    assert "s3cr3t-seed-token" not in (seeded.last_run() / "commands.log").read_text() + step_log
    deployed = json.loads((seeded.kubeconfig.parent / "deployed.json").read_text())
    assert ["ConfigMap", "seed-ids", seeded.namespace] in deployed["seed"]["objects"]  # teardown deletes it
    b = seeded.get("get", "deployment", "b")
    assert b["status"].get("availableReplicas") == 1, b["status"]
    annotation = b["spec"]["template"]["metadata"]["annotations"][runspec.OUTPUT_ANNOTATION]

    again = seeded.setup()
    assert again.returncode == 0, again.stdout + again.stderr
    outcomes = seeded.outcomes()
    assert (outcomes["deploy:seed"], outcomes["deploy:b"]) == ("up to date", "up to date"), outcomes
    assert seeded.runs() == 1
    assert (seeded.last_run() / "out" / "ids.json").is_file()  # the kept output, in this run's folder too

    partial = invoke(["deploy.b"], seeded.env)  # its pre= chain ensures a, then seed: both up to date
    assert partial.returncode == 0, partial.stdout + partial.stderr
    assert "seed: up to date (no image)" in partial.stdout and seeded.runs() == 1

    dry = seeded.setup("--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "[dry-run]" in dry.stdout and "sh seed.sh" in dry.stdout
    assert seeded.runs() == 1

    seeded.set_workflow("wf-2")  # the dependency changes: its objects, and so its deployed record
    changed = seeded.setup()
    assert changed.returncode == 0, changed.stdout + changed.stderr
    outcomes = seeded.outcomes()
    assert outcomes["deploy:a"] == "ready" and outcomes["deploy:seed"] == "ran", outcomes
    assert outcomes["deploy:b"] == "ready", outcomes  # a new output rolls its consumers out again
    assert seeded.runs() == 2
    assert seeded.get("get", "configmap", "seed-ids")["data"]["workflow_id"] == "wf-2"
    b = seeded.get("get", "deployment", "b")
    assert b["spec"]["template"]["metadata"]["annotations"][runspec.OUTPUT_ANNOTATION] != annotation
    assert b["status"].get("availableReplicas") == 1, b["status"]


class RunOnly:
    """A stack whose one service is a run step, on the shared cluster in a namespace of its own."""

    def __init__(self, maker, tools, shared, home):
        self.maker, self.shared, self.home = maker, shared, home
        self.path = maker.folder / "stack.yaml"
        self.env = {
            **tools.env,
            "E2E_STACK": str(self.path),
            "KINDLING_HOME": str(home),
            "KINDLING_MIN_FREE_DISK": "50MiB",
        }

    def __call__(self, run, *args, **extra):
        """Write the stack with this run section (and service fields), then e2e.setup ARGS."""
        self.maker.folder.mkdir(parents=True, exist_ok=True)
        stack = {
            "name": "teststack",
            "project": self.maker.project,
            "namespace": self.maker.project,
            "cluster": {"name": self.shared.name},
            "services": {"seed": {"run": run, **extra}},
        }
        self.path.write_text(yaml.safe_dump(stack, sort_keys=False))
        result = invoke(["e2e.setup", *args], self.env)
        return result, sorted(self.home.glob("runs/*/run.json"), key=lambda p: p.stat().st_mtime)[-1].parent


@pytest.fixture
def run_only(stack_maker, tools, testenv, shared_cluster, tmp_path):
    yield RunOnly(stack_maker, tools, shared_cluster, tmp_path / "home")
    testenv.kubectl(
        shared_cluster.kubeconfig, "delete", "namespace", stack_maker.project, "--wait=false", check=False
    )


def test_a_failing_run_step_reports_its_stderr_tail_and_keeps_its_log(run_only):
    script = "echo progress; echo 'datastorage refused workflow wf-9' >&2; exit 3"
    result, folder = run_only({"command": ["sh", "-c", script]})
    assert result.returncode != 0
    assert "seed: run.command failed with exit code 3" in result.stderr
    assert "datastorage refused workflow wf-9" in result.stderr
    step = next(s for s in json.loads((folder / "run.json").read_text())["steps"] if s["id"] == "deploy:seed")
    assert step["status"] == "failed" and "wf-9" in step["error"]
    log = (folder / "logs" / "deploy-seed.log").read_text()
    assert "progress" in log and "datastorage refused workflow wf-9" in log


def test_a_run_step_that_outlives_its_timeout_is_stopped_with_its_children(run_only, stack_maker):
    pause = f"{600 + int(stack_maker.project[-4:], 16) % 1000}.25"  # this test's own sleep argument
    result, folder = run_only({"command": ["sh", "-c", f"echo started >&2; sleep {pause}"], "timeout": 1})
    assert result.returncode != 0
    assert "seed: run.command: timed out after 1 s" in result.stderr and "started" in result.stderr
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline(pid) == ["sleep", pause]]


def _cmdline(pid: str) -> list:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def test_output_that_is_no_mapping_is_refused_with_what_it_printed(run_only):
    result, _ = run_only({"command": ["echo", "no workflows yet"], "configmap": "ids"})
    assert result.returncode != 0
    assert "run.configmap ids: the command's stdout cannot be the ConfigMap's data" in result.stderr
    assert "no workflows yet" in result.stderr and "fix: print one YAML or JSON mapping" in result.stderr


def seed_job(script: str) -> dict:
    """A run step's Job: one busybox container running the shell script, as the real kubelet runs it."""
    container = {"name": "seed", "image": "seed", "command": ["/bin/busybox", "sh", "-c", script]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "seed-job"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def test_a_job_based_run_step_turns_its_logs_into_a_configmap(
    run_only, stack_maker, testenv, shared_cluster, base_image
):
    job = seed_job('echo \'{"token": "t-123", "ready": true}\'')
    (stack_maker.folder / "seed").mkdir(parents=True)
    (stack_maker.folder / "seed" / "job.yaml").write_text(yaml.safe_dump(job))
    run = {"job": "seed/job.yaml", "configmap": "job-out", "timeout": 120}
    # The Job runs the service's own image (`image: seed`): the busybox base, loaded into the node.
    result, folder = run_only(run, image=base_image, load=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(folder)["deploy:seed"] == "ran", outcomes(folder)
    kubeconfig = run_only.home / "clusters" / shared_cluster.name / "kubeconfig"
    namespace = stack_maker.project
    data = testenv.kubectl_json(kubeconfig, "get", "configmap", "job-out", "-n", namespace)["data"]
    assert data == {"token": "t-123", "ready": "true"}
    finished = testenv.kubectl_json(kubeconfig, "get", "job", "seed-job", "-n", namespace)
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in finished["status"]["conditions"])
    assert '"token": "t-123"' in (folder / "logs" / "deploy-seed.log").read_text()  # its logs kept

    again, folder = run_only(run, image=base_image, load=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert outcomes(folder)["deploy:seed"] == "up to date", outcomes(folder)


# ---- stack.check ---------------------------------------------------------------------------------------

NGINX = "docker.io/library/nginx:1"


def test_stack_check_knows_a_run_steps_configmap_keys_and_checks_its_job(tmp_path):
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "job.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "seed"},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containerz": [],
                            "containers": [{"name": "s", "image": NGINX}],
                        }
                    }
                },
            }
        )
    )
    web = manifests("web", {})
    container = web[0]["spec"]["template"]["spec"]["containers"][0]
    container["image"] = NGINX
    key_ref = {"configMapKeyRef": {"name": "ids", "key": "workflow_id"}}
    container["env"] = [{"name": "WORKFLOW", "valueFrom": key_ref}]
    (tmp_path / "web.yaml").write_text(yaml.safe_dump_all(web))
    stack = {
        "name": "rs",
        "services": {
            "seed": {"run": {"command": ["sh", "seed.sh"], "configmap": "ids", "keys": ["workflow_id"]}},
            "seedjob": {"image": NGINX, "run": {"job": "seed/job.yaml"}},
            "web": {"image": NGINX, "manifests": ["web.yaml"], "depends_on": ["seed"]},
        },
    }
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    env = {"E2E_STACK": str(path), "E2E_SOURCE": ""}
    result = invoke(["stack.check", "--kubernetes-version", "1.30"], env)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith(("seed/", "web.yaml", "run."))]
    assert len(problems) == 1, problems
    assert problems[0].startswith("seed/job.yaml: Job/seed: ") and "containerz" in problems[0]

    job = yaml.safe_load((tmp_path / "seed" / "job.yaml").read_text())
    del job["spec"]["template"]["spec"]["containerz"]
    (tmp_path / "seed" / "job.yaml").write_text(yaml.safe_dump(job))
    fixed = invoke(["stack.check", "--kubernetes-version", "1.30"], env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr

    key_ref["configMapKeyRef"]["key"] = "undeclared"
    (tmp_path / "web.yaml").write_text(yaml.safe_dump_all(web))
    wrong_key = invoke(["stack.check", "--kubernetes-version", "1.30"], env)
    assert wrong_key.returncode == 1
    assert (
        'references key "undeclared" of ConfigMap "ids", which has no such key (keys: workflow_id)'
        in wrong_key.stderr
    )


def test_teardown_on_an_existing_cluster_deletes_the_configmap_a_run_step_made(
    run_only, testenv, shared_cluster, kind_registry
):
    existing = ("--registry", kind_registry.host, "--kubeconfig", str(shared_cluster.kubeconfig))
    result, _ = run_only({"command": ["echo", '{"workflow_id": "wf-1"}'], "configmap": "seed-out"}, *existing)
    assert result.returncode == 0, result.stdout + result.stderr
    namespace = run_only.maker.project
    made = testenv.kubectl_json(shared_cluster.kubeconfig, "get", "configmap", "seed-out", "-n", namespace)
    assert made["data"] == {"workflow_id": "wf-1"}
    down = invoke(["e2e.teardown", *existing], {**run_only.env, "IMAGE_REGISTRY_TLS_VERIFY": "false"})
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"deleted ConfigMap/seed-out in {namespace}" in down.stdout.splitlines()
    gone = testenv.kubectl(
        shared_cluster.kubeconfig, "get", "configmap", "seed-out", "-n", namespace, check=False
    )
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert shared_cluster.name in testenv.clusters()


def test_a_failing_job_step_reports_its_logs_and_writes_diagnostics(run_only, stack_maker, base_image):
    job = seed_job("echo 'seeding workflow 7: relation already exists'; exit 3")
    (stack_maker.folder / "seed").mkdir(parents=True)
    (stack_maker.folder / "seed" / "job.yaml").write_text(yaml.safe_dump(job))
    result, folder = run_only({"job": "seed/job.yaml", "timeout": 120}, image=base_image, load=True)
    assert result.returncode != 0
    assert "seed: run.job seed-job did not complete" in result.stderr
    assert "seeding workflow 7: relation already exists" in result.stderr
    assert (folder / "diagnostics" / "seed" / "logs-seed-job.txt").is_file()
