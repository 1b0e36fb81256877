"""`invoke stack.check`: check the stack's manifests offline, before anything is built or applied.

Loads the stack (every file check), renders each manifest file as a deploy would, with
sample image references (`localhost/<project>/<service>:check` for built services, the
`image:` of prebuilt ones), and runs the checks of tasks/libs/validate.py on the result.
Without the stack's `source` folder (e.g. the AIAnalysis stack with no Kubernaut
checkout), files under it and the builds are skipped, with a note; everything else is checked.
"""

import re
from pathlib import Path

from invoke import Collection, task

from .libs import cli, render, validate
from .libs.errors import KindlingError, StackError


@task(
    name="check",
    default=True,
    help={
        "kubernetes-version": "Kubernetes minor version whose schemas the objects are validated against "
                              f"(default {validate.KUBERNETES_VERSION}; one that kubernetes-validate ships).",
    },
)
@cli.reports_errors
def check(c, kubernetes_version=validate.KUBERNETES_VERSION):
    """Validate the stack's manifests offline: schemas, images, probe ports, ConfigMap/Secret references, selectors."""
    kv = kubernetes_validate()
    version = supported_version(kv, str(kubernetes_version))
    stack, source_missing, skipped = load_for_check(c)
    built = [n for n, s in stack.services.items() if s.built]
    refs = validate.sample_refs(stack)
    items, file_problems, unchecked = [], [], []
    for name, service in stack.services.items():
        for path in service.manifests:
            shown = validate.display_path(path, stack.folder)
            if path in skipped:
                unchecked.append(skipped[path])
                continue
            try:
                docs = render.load_documents(path)
            except render.ManifestError as exc:
                file_problems.append(validate.Problem(shown, "", str(exc).removeprefix(f"{path}: ")))
                continue
            for doc in docs:
                try:
                    rendered = validate.render_file([doc], stack, refs)
                except (AttributeError, TypeError):  # malformed; the schema check says where
                    rendered = [doc]
                items += [validate.Item(name, shown, d) for d in rendered]
    result = validate.check(items, kv=kv, refs=refs, version=version, unchecked_files=list(dict.fromkeys(unchecked)),
                            prebuilt=[n for n, s in stack.services.items() if not s.built],
                            file_problems=file_problems)

    print(f"stack.check: stack {stack.name} ({stack.path}): {len(items)} objects, "
          f"Kubernetes {version} schemas (kubernetes-validate {getattr(kv, '__version__', '?')})")
    if source_missing:
        parts = ([f"the builds of {', '.join(built)}"] if built else []) + list(skipped.values())
        print(f"note: source folder {stack.source} does not exist (check the sources out there, or set "
              f"E2E_SOURCE); not checked: {'; '.join(parts) or 'nothing'}")
    for name, notes in result.notes.items():
        for note in notes:
            print(f"note: {name}: {note}")
    if result.problems:
        lines = "\n".join(str(p) for p in result.problems)
        raise KindlingError(f"stack.check: {len(result.problems)} problem(s) in {stack.path}:\n{lines}")
    for name, service in stack.services.items():
        count = result.objects.get(name, 0)
        extra = [skipped[p] for p in service.manifests if p in skipped]
        line = f"  {name:<24} {count} object(s) ok"
        if extra:
            line += f"; not checked: {', '.join(extra)}"
        print(line)
    print(f"stack.check: no problems in {len(stack.services)} services")


def kubernetes_validate():
    """The kubernetes-validate package, imported only when the check runs."""
    try:
        import kubernetes_validate as kv
    except ImportError:
        raise KindlingError("stack.check needs the kubernetes-validate package (offline Kubernetes schemas): "
                            "pip install kubernetes-validate") from None
    return kv


def supported_version(kv, version: str) -> str:
    version = version.removeprefix("v")
    if not re.fullmatch(r"1\.[0-9]+", version):
        raise KindlingError(f"--kubernetes-version: {version!r} is not a Kubernetes minor version; write e.g. "
                            f"{validate.KUBERNETES_VERSION}")
    try:
        from kubernetes_validate.utils import all_versions

        shipped = sorted({".".join(v.split(".")[:2]) for v in all_versions()}, key=lambda v: int(v.split(".")[1]))
    except (ImportError, AttributeError):
        return version
    if version not in shipped:
        raise KindlingError(f"--kubernetes-version: kubernetes-validate {getattr(kv, '__version__', '')} has no "
                            f"schemas for {version}; choose one of {', '.join(shipped)}")
    return version


def load_for_check(c):
    """(stack, source missing?, {path: shown} of the manifests skipped), every file checked that can be.

    Files that are not under the missing source (this repository's manifests, Kind
    config, Containerfiles) must still exist.
    """
    stack = cli.load(c, check_files=False)
    if stack.source.is_dir():
        return cli.load(c), False, {}
    source = stack.source
    skipped = {}
    for field, path, kind in _stack_files(stack):
        if path.is_relative_to(source):
            if ".manifests[" in field:
                skipped[path] = "${SOURCE_DIR}/" + str(path.relative_to(source))
            continue
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            raise StackError(stack.path, field, f"{kind} {path} does not exist",
                             "correct the path (relative paths start at the stack file's folder)")
    return stack, True, skipped


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
    if stack.test is not None:
        yield "test.workdir", Path(stack.test.workdir), "folder"


collection = Collection("stack")
collection.add_task(check)
