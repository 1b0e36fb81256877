package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestConfigFiles(t *testing.T) {
	root := t.TempDir()
	cfg := filepath.Join(root, "config.yaml")
	write := func(path, content string) {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /srv/manifests\nhealthzPort: 12345\nhealthzBindAddress: 127.0.0.1\nmaxPods: 42\n")
	write(filepath.Join(root, "instance-config.yaml"), "containerRuntimeEndpoint: unix:///x.sock\n")
	write(filepath.Join(root, "kubeadm-flags.env"), `KUBELET_KUBEADM_ARGS="--node-ip=172.18.0.3 --node-labels=role=x --provider-id=kind://podman/kind/n --hostname-override=My-Node"`+"\n")

	o, err := parseFlags([]string{"--config", cfg, "--root-dir", root, "--port", "20250"})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.applyConfigFile(); err != nil {
		t.Fatal(err)
	}
	o.applyKubeadmFlags()
	if o.PodManifestPath != "/srv/manifests" || o.HealthzPort != 12345 || o.MaxPods != 42 || o.Port != 20250 || o.CRISocket != "unix:///x.sock" {
		t.Errorf("config %+v", o)
	}
	if o.NodeIP != "172.18.0.3" || o.NodeName != "my-node" || o.ProviderID != "kind://podman/kind/n" || o.NodeLabels["role"] != "x" {
		t.Errorf("kubeadm flags %+v", o)
	}

	// Command line flags win; defaults apply without the files.
	o2, _ := parseFlags([]string{"--config", filepath.Join(root, "missing.yaml"), "--root-dir", t.TempDir(), "--node-name", "n2", "--node-ip", "10.1.1.1", "--pod-manifest-path", "/m"})
	if err := o2.applyConfigFile(); err == nil {
		t.Error("a missing config is an error (the kubelet waits for it)")
	}
	o2.applyKubeadmFlags()
	if o2.NodeName != "n2" || o2.NodeIP != "10.1.1.1" || o2.PodManifestPath != "/m" || o2.HealthzPort != 10248 || o2.LogDir != "/var/log/pods" {
		t.Errorf("flags %+v", o2)
	}
	if _, err := parseFlags([]string{"extra"}); err == nil {
		t.Error("positional arguments are refused")
	}
}
