"""A service's objects from a kustomization: `kustomize: DIR`, rendered with kubectl's built-in
`kubectl kustomize DIR`. One backend of deploysources."""

from dataclasses import dataclass
from pathlib import Path

from ..checks.checkresult import FAIL, OK, Check, parse_version
from ..stack.stackfile import Checker

KEY = "kustomize"  # the service's key in the stack file
# What kustomize looks for in a folder (sigs.k8s.io/kustomize/api konfig/general.go).
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# kubectl's built-in kustomize (`kubectl kustomize`) arrived in kubectl 1.14.
IN_KUBECTL = (1, 14)


@dataclass(frozen=True)
class Kustomize:
    folder: Path  # holds a kustomization

    key = KEY
    tool = "kubectl kustomize"
    install_hint = ""

    @property
    def origin(self) -> Path:
        return self.folder

    def files(self, where: str) -> list:
        return [(where, self.folder, "folder")]

    def argv(self, namespace: str) -> list:
        """kubectl's built-in kustomize (kubectl 1.14 and newer); the namespace is the stack's,
        given to the objects when they are rendered, as for manifests."""
        return ["kubectl", "kustomize", str(self.folder)]

    def secrets(self) -> list:
        return []

    @staticmethod
    def tool_check(runner, kubectl_text) -> Check:
        """kubectl new enough to have `kubectl kustomize`."""
        from ..checks.preflight import INSTALL_HINTS

        wanted = ".".join(map(str, IN_KUBECTL))
        version = parse_version(kubectl_text) if kubectl_text else None
        if version is None:
            return Check(
                "kustomize",
                FAIL,
                "kustomize services are rendered with `kubectl kustomize`, and no working kubectl was found",
                INSTALL_HINTS["kubectl"],
            )
        if version[:2] < IN_KUBECTL:
            return Check(
                "kustomize",
                FAIL,
                f"kubectl {'.'.join(map(str, version))} has no `kubectl kustomize` (kubectl {wanted}+)",
                f"upgrade kubectl: {INSTALL_HINTS['kubectl']}",
            )
        return Check(
            "kustomize", OK, f"kubectl {'.'.join(map(str, version[:2]))}'s built-in `kubectl kustomize`"
        )


def parse(c: Checker, raw, where, service_name, source) -> Kustomize:
    """`kustomize: DIR`, a folder holding a kustomization."""
    folder = c.existing(c.path_value(raw, where, c.path.parent, source), where, "folder")
    if c.check_files and not any((folder / name).is_file() for name in KUSTOMIZATION_FILES):
        c.fail(
            where,
            f"folder {folder} holds no {KUSTOMIZATION_FILES[0]}",
            f"point kustomize at a folder holding one of: {', '.join(KUSTOMIZATION_FILES)}",
        )
    return Kustomize(folder)
