import base64

import pytest
import yaml

from tasks.libs import render


def deployment(name, image, **container):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"name": "init", "image": image}],
                    "containers": [{"name": name, "image": image, **container}],
                }
            }
        },
    }


def test_service_key_and_repository_are_substituted_with_never_pull():
    docs = [
        deployment("api", "api"),
        deployment("worker", "localhost/proj/worker:old"),
        deployment("db", "db", imagePullPolicy="IfNotPresent"),
    ]
    refs = {
        "api": "localhost/proj/api:t1",
        "worker": "localhost/proj/worker:t2",
        "db": "docker.io/library/postgres:16",
    }
    out = render.render(
        docs,
        project="proj",
        namespace="ns",
        service_refs=refs,
        pull_policies={"api": "Never", "worker": "Never"},
    )
    by_name = {d["metadata"]["name"]: d for d in out}
    for name in ("api", "worker"):
        for container in render.containers(by_name[name]):
            assert container["image"] == refs[name]
            assert container["imagePullPolicy"] == "Never"
    db = render.containers(by_name["db"])[1]
    assert db["image"] == "docker.io/library/postgres:16" and db["imagePullPolicy"] == "IfNotPresent"
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "api"  # input untouched


def test_unrelated_images_are_left_alone():
    docs = [deployment("x", "docker.io/library/busybox:1.36"), deployment("y", "otherproj/api:1")]
    out = render.render(
        docs,
        project="proj",
        namespace="ns",
        service_refs={"api": "localhost/proj/api:t"},
        pull_policies={"api": "Never"},
    )
    images = [c["image"] for d in out for c in render.containers(d)]
    assert images == ["docker.io/library/busybox:1.36"] * 2 + ["otherproj/api:1"] * 2
    assert all("imagePullPolicy" not in c for d in out for c in render.containers(d))


def test_namespaces_made_explicit_for_namespaced_kinds_only():
    docs = [
        {"kind": "ClusterRole", "metadata": {"name": "r"}},
        {"kind": "ConfigMap", "metadata": {"name": "c"}},
        {"kind": "Secret", "metadata": {"name": "s", "namespace": "other"}},
    ]
    out = {
        d["metadata"]["name"]: d
        for d in render.render(docs, project="p", namespace="ns", service_refs={}, pull_policies={})
    }
    assert "namespace" not in out["r"]["metadata"]
    assert out["c"]["metadata"]["namespace"] == "ns"
    assert out["s"]["metadata"]["namespace"] == "other"


def test_apply_order_puts_what_is_referenced_first():
    kinds = [
        "Deployment",
        "Service",
        "ConfigMap",
        "AIAnalysis",
        "ClusterRoleBinding",
        "Job",
        "CustomResourceDefinition",
        "Secret",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
    ]
    docs = [{"kind": k, "metadata": {"name": k.lower()}} for k in kinds]
    order = [d["kind"] for d in render.sort_for_apply(docs)]
    assert order.index("Namespace") < order.index("CustomResourceDefinition") < order.index("ConfigMap")
    assert order.index("ConfigMap") < order.index("Deployment")
    assert order.index("Secret") < order.index("Deployment")
    assert order.index("ClusterRole") < order.index("ClusterRoleBinding") < order.index("Service")
    assert order.index("Service") < order.index("Deployment")
    assert order[-1] == "AIAnalysis"  # custom resources after their CRD and the workloads


def test_readiness_targets_and_crd_split():
    docs = [
        {"kind": "CustomResourceDefinition", "metadata": {"name": "a.b"}},
        {"kind": "Job", "metadata": {"name": "migrate", "namespace": "ns"}},
        {"kind": "StatefulSet", "metadata": {"name": "pg", "namespace": "ns"}},
        {"kind": "Service", "metadata": {"name": "pg", "namespace": "ns"}},
    ]
    crds, rest = render.split_crds(docs)
    assert [d["kind"] for d in crds] == ["CustomResourceDefinition"] and len(rest) == 3
    assert render.readiness_targets(docs) == [("Job", "migrate", "ns"), ("StatefulSet", "pg", "ns")]


def test_secret_values_are_collected_for_masking():
    docs = [
        {
            "kind": "Secret",
            "metadata": {"name": "s"},
            "stringData": {"password": "hunter22"},
            "data": {
                "token": base64.b64encode(b"tok-abc-123").decode(),
                "short": base64.b64encode(b"ab").decode(),
            },
        },
        {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "not-a-secret"}},
    ]
    assert render.secret_values(docs) == {"hunter22", "tok-abc-123"}


def test_digest_changes_with_content_only():
    a = [deployment("api", "localhost/p/api:1")]
    assert render.digest(a) == render.digest([deployment("api", "localhost/p/api:1")])
    assert render.digest(a) != render.digest([deployment("api", "localhost/p/api:2")])


def test_load_documents(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(
        "---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
        "---\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n"
    )
    assert [d["kind"] for d in render.load_documents(path)] == ["ConfigMap", "Service"]
    path.write_text("just: text\n")
    with pytest.raises(render.ManifestError, match="not a Kubernetes object"):
        render.load_documents(path)


def test_kind_registry_pieces_follow_kinds_local_registry_guide():
    config = render.kind_registry_config(
        {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": [{"role": "control-plane"}]}
    )
    assert config["containerdConfigPatches"] == [
        '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"'
    ]
    assert render.kind_registry_config(config) == config  # idempotent
    assert render.registry_hosts_toml("kind-registry") == '[host."http://kind-registry:5000"]\n'
    hosting = render.local_registry_hosting("localhost:5001")
    assert hosting["metadata"] == {"name": "local-registry-hosting", "namespace": "kube-public"}
    assert 'host: "localhost:5001"' in hosting["data"]["localRegistryHosting.v1"]


def test_coverage_and_registry_kind_configs_compose():
    config = render.kind_registry_config(render.coverage_kind_config(None, "/host/cov"))
    assert config["nodes"][0]["extraMounts"] == [{"hostPath": "/host/cov", "containerPath": "/coverdata"}]
    assert len(config["containerdConfigPatches"]) == 1


def test_teardown_order_is_the_reverse_of_the_apply_order_with_crds_last():
    from tasks.libs.render import teardown_order

    objects = [
        ["CustomResourceDefinition", "widgets.x.io", ""],
        ["ConfigMap", "c", "ns"],
        ["Deployment", "d", "ns"],
        ["Widget", "w", "ns"],
        ["Service", "s", "ns"],
        ["Job", "j", "ns"],
        ["Secret", "sec", "ns"],
    ]
    kinds = [o[0] for o in teardown_order(objects)]
    assert kinds[0] == "Widget" and kinds[-1] == "CustomResourceDefinition"
    assert kinds.index("Job") < kinds.index("Deployment") < kinds.index("Service") < kinds.index("ConfigMap")
    assert kinds.index("ConfigMap") < kinds.index("Secret")  # Secrets were applied before ConfigMaps


def test_dump_quotes_every_string_kubectl_would_read_as_another_type():
    """kubectl's go-yaml v2 reads plain y/Y/n/N as booleans and 1e3 or 5. as floats (PyYAML reads
    them as strings, so safe_dump leaves them plain); test_fidelity.py applies them for real."""
    tricky = ["n", "N", "y", "Y", "1e3", "-2.5E-3", "5.", ".5", "yes", "0755", "12"]
    text = render.dump([{"data": {f"k{i}": v for i, v in enumerate(tricky)}, "num": 3, "f": 1.5, "b": True}])
    lines = dict(line.strip().split(": ", 1) for line in text.splitlines() if ": " in line)
    assert all(lines[f"k{i}"] == f"'{v}'" for i, v in enumerate(tricky)), text
    assert (lines["num"], lines["f"], lines["b"]) == ("3", "1.5", "true")  # other types stay plain
    assert render.dump([{"y": 1}]) == "'y': 1\n"  # keys too: kubectl would read a boolean key
    assert "plain: x1e3" in render.dump([{"plain": "x1e3"}])
    assert yaml.safe_load(text)["data"] == {f"k{i}": v for i, v in enumerate(tricky)}
