"""`invoke stack.check`: check the stack offline, before anything is built or applied.

Every problem it can find in one run, each naming its file, where in it and the fix; then exit 1:

- the stack file (tasks/libs/stack/model.py, collecting: each service is read on its own);
- each build's COPY/ADD sources against its context: missing, left out by the ignore file the
  engine reads, or in a git submodule that is not checked out (tasks/libs/checks/buildcontext.py);
- each service's objects, rendered as a deploy would with sample image references
  (`localhost/<project>/<service>:check` for built services, the `image:` of prebuilt ones),
  against the Kubernetes version the cluster will run (tasks/libs/checks/nodeversion.py) and the checks
  of tasks/libs/checks/validate.py.

It also reports the source checkout's revision and, when the stack declares the one it was
verified against (`source.revision`), what the stack uses that changed since (tasks/libs/checks/drift.py).
Without the stack's `source` folder (e.g. the AIAnalysis stack with no Kubernaut checkout),
files under it and the builds are skipped, with a note; everything else is checked.
"""

import re
import shutil
from pathlib import Path

import yaml
from invoke import Collection, task

from .libs import cli, deploysources, render, runs
from .libs.build import containerfile, inputsets
from .libs.checks import buildcontext, drift, nodeversion, validate
from .libs.errors import KindlingError, StackError
from .libs.procs.runner import Runner
from .libs.settings import base_images_setting, process_environment
from .libs.stack import baseimages, buildmounts

KIND_VERSION_TIMEOUT = 30  # seconds


@task(
    name="check",
    default=True,
    help={
        "kubernetes-version": "Kubernetes minor version whose schemas the objects are validated against, "
        "e.g. 1.30 (default: the version the cluster will run: the node image's tag, "
        "else the installed kind's default node image).",
    },
)
@cli.reports_errors
def check(c, kubernetes_version=None):
    """Check the stack offline: the stack file, build contexts, manifests (schemas, images, probe ports,
    ConfigMap/Secret references, selectors); report the source's revision and what changed since."""
    kv = kubernetes_validate()
    if kubernetes_version:
        supported_version(kv, str(kubernetes_version))  # a bad option fails before anything else
    stack, problems, source_missing, skipped = load_for_check(c)
    if stack is None:
        _fail(cli.stack_file(c), [str(p) for p in problems])
    runner = Runner()
    version, version_origin, version_note = schema_version(kv, kubernetes_version, stack, runner)

    copies, build_problems = ({}, []) if source_missing else build_checks(stack, runner)
    items, file_problems, unchecked = manifest_items(stack, skipped)
    refs = validate.sample_refs(stack)
    result = validate.check(
        items,
        kv=kv,
        refs=refs,
        version=version,
        unchecked_files=list(dict.fromkeys(unchecked)),
        prebuilt=[n for n, s in stack.services.items() if not s.built],
        file_problems=file_problems,
    )

    print(
        f"stack.check: stack {stack.name} ({stack.path}): {len(items)} objects, Kubernetes {version} "
        f"schemas ({version_origin}; kubernetes-validate {getattr(kv, '__version__', '?')})"
        + (f", profiles {', '.join(stack.profiles)} applied" if stack.profiles else "")
    )
    if version_note:
        print(f"note: {version_note}")
    if source_missing:
        built = [n for n, s in stack.services.items() if s.built]
        parts = ([f"the builds of {', '.join(built)}"] if built else []) + list(skipped.values())
        print(
            f"note: source folder {stack.source} does not exist (check the sources out there, or set "
            f"E2E_SOURCE); not checked: {'; '.join(parts) or 'nothing'}"
        )
    else:
        used = drift.uses(stack, copies)
        revision = drift.inspect(runner, stack.source, stack.source_revision, used)
        if revision.current or revision.declared:
            for kind, text in drift.report_lines(revision, used):
                print(f"{kind}: {text}")
    for name, notes in result.notes.items():
        for note in notes:
            print(f"note: {name}: {note}")
    for name, service in stack.services.items():
        for note in buildmounts.skipped(service.build):
            print(f"note: {name}: {note}")
    if not source_missing:
        setting = base_images_setting(cli.e2e_config(c), process_environment())
        for kind, text in base_image_lines(stack, setting):
            print(f"{kind}: {text}")
    problems = [str(p) for p in (*problems, *build_problems, *result.problems)]
    if problems:
        _fail(stack.path, problems)
    for name, service in stack.services.items():
        count = result.objects.get(name, 0)
        extra = [skipped[p] for p in deploysources.origins(service) if p in skipped]
        line = f"  {name:<24} {count} object(s) ok"
        if service.built and not source_missing:
            line += "; " + input_summary(service.build, runner, runs.state_home(stack, process_environment()))
        if extra:
            line += f"; not checked: {', '.join(extra)}"
        print(line)
    print(f"stack.check: no problems in {len(stack.services)} services")


def base_image_lines(stack, setting=(), origin="the base-images setting") -> list:
    """(note|warning, text): each FROM a base-image mapping rewrites, and each mapping that rewrites
    none (of its build, or of any build for the stack's own and the setting's, which wins)."""
    lines, used = [], set()
    for name, service in stack.services.items():
        build = service.build
        mapping = baseimages.merged(stack.base_images, build.base_images, setting) if build else ()
        if not mapping:
            continue
        text = Path(build.containerfile).read_text(encoding="utf-8", errors="replace")
        found = baseimages.substitute(text, build.build_args(), mapping)
        used.update(key for key, _ in mapping if key not in found.unused)
        for change in found.substitutions:
            lines.append(
                ("note", f"{name}: FROM {change.original} -> {change.replacement} (line {change.line})")
            )
        for key in found.unused:
            if key in dict(build.base_images):
                lines.append(
                    (
                        "warning",
                        f"services.{name}.build.base_images: {key} matches no FROM of {build.containerfile}",
                    )
                )
    for key, _ in stack.base_images:
        if key not in used:
            lines.append(("warning", f"base_images: {key} matches no FROM of any build"))
    for key, _ in setting:
        if key not in used:
            lines.append(("warning", f"{origin}: {key} matches no FROM of any build"))
    return lines


def input_summary(build, runner, home) -> str:
    """How many files make the image's inputs, and by which rule (inputsets.py)."""
    found = inputsets.resolve(
        build.inputs, build.containerfile, build.context, build.build_args(), runner, [home]
    )
    text = f"image inputs: {len(found.files)} file(s) by rule {found.rule}"
    return text + (f" ({found.note})" if found.note else "")


def _fail(path, problems):
    raise KindlingError(f"stack.check: {len(problems)} problem(s) in {path}:\n" + "\n".join(problems))


def kubernetes_validate():
    """The kubernetes-validate package, imported only when the check runs."""
    try:
        import kubernetes_validate as kv
    except ImportError:
        raise KindlingError(
            "stack.check needs the kubernetes-validate package (offline Kubernetes schemas): "
            "pip install kubernetes-validate"
        ) from None
    return kv


def shipped_versions(kv) -> list:
    """The Kubernetes minor versions kubernetes-validate has schemas for, oldest first ([] when unknown)."""
    try:
        from kubernetes_validate.utils import all_versions
    except ImportError:
        return []
    return sorted({".".join(v.split(".")[:2]) for v in all_versions()}, key=lambda v: int(v.split(".")[1]))


def supported_version(kv, version: str, shipped=None) -> str:
    version = version.removeprefix("v")
    if not re.fullmatch(r"1\.[0-9]+", version):
        raise KindlingError(
            f"--kubernetes-version: {version!r} is not a Kubernetes minor version; write "
            f"e.g. {validate.KUBERNETES_VERSION}"
        )
    shipped = shipped_versions(kv) if shipped is None else shipped
    if shipped and version not in shipped:
        raise KindlingError(
            f"--kubernetes-version: kubernetes-validate {getattr(kv, '__version__', '')} has "
            f"no schemas for {version}; choose one of {', '.join(shipped)}"
        )
    return version


def schema_version(kv, option, stack, runner) -> tuple:
    """(the Kubernetes version whose schemas to use, where it comes from, a note or "")."""
    shipped = shipped_versions(kv)
    if option:
        return supported_version(kv, str(option), shipped), "--kubernetes-version", ""
    choice = cluster_version(stack, process_environment(), runner)
    version, note = nodeversion.schema_version(choice.version, shipped)
    return version, f"the cluster's: {choice.origin}", "; ".join(filter(None, (choice.note, note)))


def cluster_version(stack, env, runner) -> nodeversion.Choice:
    """The Kubernetes version the stack's cluster will run (tasks/libs/checks/nodeversion.py)."""
    pinned_origin = "KINDLING_NODE_IMAGE" if env.get("KINDLING_NODE_IMAGE") else "cluster.image"
    config, config_origin = "", ""
    if stack.cluster_config is not None and Path(stack.cluster_config).is_file():
        try:
            document = yaml.safe_load(Path(stack.cluster_config).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            document = None  # kind reports it when the cluster is created
        config = nodeversion.config_image(document)
        shown = validate.display_path(stack.cluster_config, stack.folder)
        config_origin = f"the control-plane node of {shown}"
    kind_text = None
    if shutil.which("kind"):
        result = runner.run(
            ["kind", "version"],
            env={"KIND_EXPERIMENTAL_PROVIDER": stack.engine},
            check=False,
            mutating=False,
            timeout=KIND_VERSION_TIMEOUT,
        )
        kind_text = result.stdout if result.exit_code == 0 else None
    return nodeversion.cluster_version(stack.node_image, pinned_origin, config, config_origin, kind_text)


def load_for_check(c):
    """(stack or None, problems, source missing?, {path: shown} of the files skipped), every file checked
    that can be: without the source, files that are not under it (this repository's manifests, Kind
    config, Containerfiles) must still exist."""
    problems = []
    try:
        stack = cli.load(c, check_files=False, problems=problems)
        if stack.source.is_dir():
            problems = []
            return cli.load(c, problems=problems), problems, False, {}
    except StackError as exc:  # past the header nothing can be read
        return None, problems + [exc], False, {}
    source = stack.source
    skipped = {}
    for field, file, kind in _stack_files(stack):
        if file.is_relative_to(source):
            if re.search(r"\.(manifests\[\d+\]|helm\.chart|kustomize)$", field):
                skipped[file] = "${SOURCE_DIR}/" + str(file.relative_to(source))
            continue
        if not (file.is_dir() if kind == "folder" else file.is_file()):
            problems.append(
                StackError(
                    stack.path,
                    field,
                    f"{kind} {file} does not exist",
                    "correct the path (relative paths start at the stack file's folder)",
                )
            )
    return stack, problems, True, skipped


def _stack_files(stack):
    """(field, path, "file"|"folder") of every path the stack names."""
    if stack.cluster_config is not None:
        yield "cluster.config", Path(stack.cluster_config), "file"
    for name, service in stack.services.items():
        if service.build is not None:
            yield f"services.{name}.build.containerfile", Path(service.build.containerfile), "file"
            yield f"services.{name}.build.context", Path(service.build.context), "folder"
        for i, path in enumerate(service.manifests):
            yield f"services.{name}.manifests[{i}]", Path(path), "file"
        for field_name, path, kind in deploysources.files(service, f"services.{name}"):
            yield field_name, Path(path), kind
    if stack.test is not None:
        yield "test.workdir", Path(stack.test.workdir), "folder"


def build_checks(stack, runner) -> tuple:
    """({service: its COPY/ADD lines from the context}, problems of the build contexts)."""
    copies, problems = {}, []
    gitlink = drift.gitlink(runner)
    for name, service in stack.services.items():
        build = service.build
        if build is None or not Path(build.containerfile).is_file() or not Path(build.context).is_dir():
            continue  # the stack file's check has said so
        text = Path(build.containerfile).read_text(encoding="utf-8", errors="replace")
        copies[name] = containerfile.copies(text, build.build_args())
        shown = validate.display_path(build.containerfile, stack.folder)
        context = buildcontext.ContextCheck(stack.engine, build.containerfile, build.context, shown, gitlink)
        problems += context.problems(copies[name])
    return copies, problems


def manifest_items(stack, skipped) -> tuple:
    """(validate.Items of every object, problems reading files, files not checked)."""
    refs = validate.sample_refs(stack)
    items, file_problems, unchecked = [], [], []
    for name, service in stack.services.items():
        # A run step's ConfigMap is defined, with its declared keys; its Job is checked like a manifest.
        items += [
            validate.Item(name, "run.configmap", doc)
            for doc in deploysources.run_objects(service, stack.namespace)
        ]
        # Its manifests, a chart or kustomization, a run step's Job:
        for path in deploysources.check_origins(service):
            shown = validate.display_path(path, stack.folder)
            if path in skipped:
                unchecked.append(skipped[path])
                continue
            if not Path(path).exists():
                continue  # the stack file's check has said so
            try:
                docs = deploysources.origin_documents(service, path, stack.namespace)
            except render.ManifestError as exc:
                file_problems.append(validate.Problem(shown, "", str(exc).removeprefix(f"{path}: ")))
                continue
            for doc in docs:
                try:
                    rendered = validate.render_file([doc], stack, refs)
                except (AttributeError, TypeError):  # malformed; the schema check says where
                    rendered = [doc]
                items += [validate.Item(name, shown, d) for d in rendered]
    return items, file_problems, unchecked


collection = Collection("stack")
collection.add_task(check)
