"""Kubernaut's inter-service TLS and Data Storage's signing certificate (the kindling `certs` run
step), made with openssl on the host.

Kubernaut's harness makes them in Go before Data Storage starts (test/infrastructure/
interservice_tls.go GenerateInterServiceTLS; datastorage.go GenerateSigningCertSecret):
  - a CA (ECDSA P-256, CN kubernaut-inter-service-ca, 24 h), published as the inter-service-ca
    ConfigMap (key ca.crt) and written beside the kubeconfig as inter-service-ca.pem, where
    Kubernaut's host-side test clients read it (InterServiceCAPath);
  - per service a kubernetes.io/tls Secret with an ECDSA P-256 leaf for serverAuth, its SANs
    localhost, the Service name in its four DNS forms and 127.0.0.1;
  - datastorage-signing: a self-signed RSA 2048 kubernetes.io/tls certificate (CN
    datastorage-signing, O Kubernaut, SAN localhost) Data Storage signs audit exports with.
The Secrets are applied here; the CA goes to stdout as JSON ({"ca.crt": PEM}) for kindling's
`configmap:` option. Private keys live in a private temporary folder and are never printed. When
the Secrets exist and their certificates verify against the CA file, nothing is made again (the
harness's idempotency guard).

    certs.py --service data-storage-service=datastorage-tls --signing-secret datastorage-signing
"""

import argparse
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import kube

OPENSSL_TIMEOUT = 60
DAYS = "1"  # the harness's 24 hours
CA_NAME = "kubernaut-inter-service-ca"
# Minimal openssl configurations: explicit, so no system openssl.cnf (or LibreSSL's) changes them.
REQ_CONFIG = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n"
CA_EXTENSIONS = (
    "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
    "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
)
SIGNING_EXTENSIONS = (
    "[v3_signing]\nbasicConstraints = critical,CA:FALSE\n"
    "keyUsage = critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost\n"
)


def openssl(*args) -> str:
    argv = ["openssl", *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT, check=False)
    except FileNotFoundError:
        raise kube.StepError(
            "openssl is not on PATH: install it (e.g. apt-get install openssl, dnf install openssl)"
        ) from None
    except subprocess.TimeoutExpired:
        raise kube.StepError(f"`{' '.join(argv)}` did not finish within {OPENSSL_TIMEOUT} s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise kube.StepError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {tail}")
    return done.stdout


def leaf_extensions(service: str, ns: str) -> str:
    """The harness's SANs: localhost, the Service's DNS names, 127.0.0.1 (GenerateInterServiceTLS)."""
    names = [
        "localhost",
        service,
        f"{service}.{ns}",
        f"{service}.{ns}.svc",
        f"{service}.{ns}.svc.cluster.local",
    ]
    return (
        "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
        "subjectAltName = " + ",".join([f"DNS:{n}" for n in names] + ["IP:127.0.0.1"]) + "\n"
    )


def tls_secret(name: str, cert: str, key: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert, "tls.key": key},
    }


def make(folder: Path, services: dict, signing_secret: str, ns: str) -> tuple:
    """(CA PEM, Secret objects)."""
    config = folder / "openssl.cnf"
    config.write_text(REQ_CONFIG + CA_EXTENSIONS + SIGNING_EXTENSIONS)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca_key),
        "-subj",
        f"/CN={CA_NAME}",
        "-days",
        DAYS,
        "-config",
        str(config),
        "-extensions",
        "v3_ca",
        "-out",
        str(ca_crt),
    )
    objects = []
    for service, secret_name in services.items():
        key, csr, crt, ext = (folder / f"{service}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
        ext.write_text(leaf_extensions(service, ns))
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
        openssl(
            "req",
            "-new",
            "-key",
            str(key),
            "-subj",
            f"/CN={service}",
            "-config",
            str(config),
            "-out",
            str(csr),
        )
        openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-set_serial",
            str(secrets.randbits(63)),
            "-days",
            DAYS,
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        )
        objects.append(tls_secret(secret_name, crt.read_text(), key.read_text()))
    if signing_secret:
        key, crt = folder / "signing.key", folder / "signing.crt"
        openssl("genrsa", "-out", str(key), "2048")
        openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            str(key),
            "-subj",
            "/CN=datastorage-signing/O=Kubernaut",
            "-days",
            DAYS,
            "-config",
            str(config),
            "-extensions",
            "v3_signing",
            "-out",
            str(crt),
        )
        objects.append(tls_secret(signing_secret, crt.read_text(), key.read_text()))
    return ca_crt.read_text(), objects


def still_valid(folder: Path, ca_file: Path, services: dict, signing_secret: str, ns: str) -> bool:
    """Whether an earlier run's CA file and Secrets are all there and belong together."""
    if not ca_file.is_file():
        return False
    wanted = set(services.values()) | ({signing_secret} if signing_secret else set())
    found = {
        s["metadata"]["name"]: s for s in kube.get_items("secrets", ns) if s["metadata"]["name"] in wanted
    }
    if set(found) != wanted:
        return False
    for secret_name in services.values():
        cert = folder / f"{secret_name}.crt"
        cert.write_bytes(base64.b64decode(found[secret_name].get("data", {}).get("tls.crt", "")))
        try:
            openssl("verify", "-CAfile", str(ca_file), str(cert))
        except kube.StepError:
            return False
    return True


def parse_services(values: list) -> dict:
    services = {}
    for value in values:
        service, _, secret_name = value.partition("=")
        if not service or not secret_name:
            raise kube.StepError(
                f"--service {value!r}: write SERVICE=SECRET, e.g. data-storage-service=datastorage-tls"
            )
        services[service] = secret_name
    return services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="SERVICE=SECRET",
        help="a Kubernetes Service that serves TLS, and the Secret its certificate goes in",
    )
    parser.add_argument("--signing-secret", default="", help="Secret for Data Storage's signing certificate")
    args = parser.parse_args()
    services = parse_services(args.service)
    ns = kube.namespace()
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig or os.pathsep in kubeconfig:
        raise kube.StepError("KUBECONFIG must name the cluster's one kubeconfig file (kindling sets it)")
    ca_file = Path(kubeconfig).parent / "inter-service-ca.pem"
    with tempfile.TemporaryDirectory(prefix="kubernaut-certs-") as tmp:
        folder = Path(tmp)
        if still_valid(folder, ca_file, services, args.signing_secret, ns):
            print(f"certificates in {ns} still match {ca_file}: kept", file=sys.stderr)
            ca_pem = ca_file.read_text()
        else:
            ca_pem, objects = make(folder, services, args.signing_secret, ns)
            kube.apply(objects, ns)
            fd = os.open(ca_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(ca_pem)
            print(f"made the CA, {len(objects)} Secrets in {ns}; CA written to {ca_file}", file=sys.stderr)
    json.dump({"ca.crt": ca_pem}, sys.stdout)


if __name__ == "__main__":
    kube.main(main)
