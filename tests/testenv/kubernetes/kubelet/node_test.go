package main

import (
	"runtime"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testFacts() nodeFacts {
	return nodeFacts{
		Name: "kind-control-plane", IP: "172.18.0.2",
		Labels:     map[string]string{"topology.example/zone": "a", v1.LabelHostname: "overridden"},
		ProviderID: "kind://podman/kind/kind-control-plane",
		Capacity: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse("2"), v1.ResourcePods: resource.MustParse("110"),
		},
		Info:           v1.NodeSystemInfo{KubeletVersion: kubeletVersion, OperatingSystem: "linux"},
		KubeletPort:    10250,
		RuntimeVersion: "containerd://1.6.20",
	}
}

func TestInitialNode(t *testing.T) {
	now := time.Now()
	n := initialNode(testFacts(), now)
	want := map[string]string{
		v1.LabelHostname:          "kind-control-plane", // kubeadm waits for this label
		v1.LabelOSStable:          "linux",
		v1.LabelArchStable:        runtime.GOARCH,
		"beta.kubernetes.io/os":   "linux",
		"beta.kubernetes.io/arch": runtime.GOARCH,
		"topology.example/zone":   "a",
	}
	for k, v := range want {
		if n.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, n.Labels[k], v)
		}
	}
	if n.Spec.ProviderID != "kind://podman/kind/kind-control-plane" {
		t.Errorf("providerID %q", n.Spec.ProviderID)
	}
	s := n.Status
	if last := s.Conditions[len(s.Conditions)-1]; last.Type != v1.NodeReady || last.Status != v1.ConditionTrue || last.Reason != "KubeletReady" {
		t.Errorf("Ready must be last (kind --wait reads conditions[-1:]): %+v", s.Conditions)
	}
	if len(s.Conditions) != 4 {
		t.Errorf("conditions %+v", s.Conditions)
	}
	for _, c := range s.Conditions[:3] {
		if c.Status != v1.ConditionFalse {
			t.Errorf("%s should be False", c.Type)
		}
	}
	if s.DaemonEndpoints.KubeletEndpoint.Port != 10250 || s.NodeInfo.ContainerRuntimeVersion != "containerd://1.6.20" || s.NodeInfo.KubeletVersion != "v1.36.3" {
		t.Errorf("status %+v", s)
	}
	if len(s.Addresses) != 2 || s.Addresses[0].Type != v1.NodeInternalIP || s.Addresses[0].Address != "172.18.0.2" || s.Addresses[1].Type != v1.NodeHostName {
		t.Errorf("addresses %+v", s.Addresses)
	}
	if s.Allocatable.Cpu().Value() != 2 || s.Capacity.Pods().Value() != 110 {
		t.Errorf("capacity %+v allocatable %+v", s.Capacity, s.Allocatable)
	}
}

func TestNodeStatusHeartbeat(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := nodeStatus(v1.NodeStatus{}, testFacts(), t0)
	// Someone else's condition (e.g. NetworkUnavailable) stays, before Ready.
	s.Conditions = append([]v1.NodeCondition{{Type: v1.NodeNetworkUnavailable, Status: v1.ConditionFalse}}, s.Conditions...)
	t1 := t0.Add(10 * time.Second)
	f := testFacts()
	f.RuntimeVersion = "" // CRI unavailable this time: keep the old value
	s2 := nodeStatus(s, f, t1)
	if s2.NodeInfo.ContainerRuntimeVersion != "containerd://1.6.20" {
		t.Errorf("runtime version lost")
	}
	last := s2.Conditions[len(s2.Conditions)-1]
	if last.Type != v1.NodeReady {
		t.Fatalf("Ready not last: %+v", s2.Conditions)
	}
	if !last.LastHeartbeatTime.Time.Equal(t1) || !last.LastTransitionTime.Time.Equal(t0) {
		t.Errorf("heartbeat %v transition %v", last.LastHeartbeatTime, last.LastTransitionTime)
	}
	found := false
	for _, c := range s2.Conditions {
		found = found || c.Type == v1.NodeNetworkUnavailable
	}
	if !found || len(s2.Conditions) != 5 {
		t.Errorf("conditions %+v", s2.Conditions)
	}
}

func TestNodeImages(t *testing.T) {
	var list []*runtimeapi.Image
	for i := 0; i < 60; i++ {
		list = append(list, &runtimeapi.Image{Id: "sha256:x", RepoTags: []string{"t"}, RepoDigests: []string{"d"}, Size: uint64(i)})
	}
	list = append(list, &runtimeapi.Image{RepoTags: []string{"a", "b", "c", "d", "e", "f"}, Size: 1000})
	got := nodeImages(list)
	if len(got) != 50 {
		t.Fatalf("at most 50 images: %d", len(got))
	}
	if got[0].SizeBytes != 1000 || len(got[0].Names) != 5 {
		t.Errorf("biggest first, at most 5 names: %+v", got[0])
	}
	if got[1].Names[0] != "d" || got[1].Names[1] != "t" {
		t.Errorf("digests then tags: %+v", got[1])
	}
}

func TestImageHelpers(t *testing.T) {
	cases := []struct{ in, out string }{
		{"busybox", "busybox:latest"},
		{"busybox:1.36", "busybox:1.36"},
		{"localhost:5000/app", "localhost:5000/app:latest"},
		{"registry.k8s.io/pause@sha256:" + "0123456789012345678901234567890123456789012345678901234567890123", "registry.k8s.io/pause@sha256:0123456789012345678901234567890123456789012345678901234567890123"},
	}
	for _, tc := range cases {
		if got, err := applyDefaultImageTag(tc.in); err != nil || got != tc.out {
			t.Errorf("%s -> %s %v", tc.in, got, err)
		}
	}
	if _, err := applyDefaultImageTag("UPPER/Case"); err == nil {
		t.Error("invalid names are errors (InvalidImageName)")
	}
	policies := map[string]v1.PullPolicy{"busybox": v1.PullAlways, "busybox:latest": v1.PullAlways, "busybox:1": v1.PullIfNotPresent}
	for image, want := range policies {
		if got := effectivePullPolicy(&v1.Container{Image: image}); got != want {
			t.Errorf("%s: %s", image, got)
		}
	}
	if got := effectivePullPolicy(&v1.Container{Image: "busybox", ImagePullPolicy: v1.PullNever}); got != v1.PullNever {
		t.Errorf("the spec's policy wins: %s", got)
	}
	if imageRefOf(&runtimeapi.Image{Id: "sha256:1", RepoDigests: []string{"docker.io/library/busybox@sha256:2"}}) != "docker.io/library/busybox@sha256:2" ||
		imageRefOf(&runtimeapi.Image{Id: "sha256:1"}) != "sha256:1" {
		t.Error("imageID: repo digest, else ID")
	}
}

func TestKubeadmFlags(t *testing.T) {
	env := `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock --node-ip=172.18.0.2 --node-labels=a=b,c=d --pod-infra-container-image=registry.k8s.io/pause:3.10 --provider-id=kind://podman/kind/kind-control-plane --hostname-override kind-control-plane"`
	f := kubeadmFlags("# comment\n" + env + "\n")
	if f["node-ip"] != "172.18.0.2" || f["provider-id"] != "kind://podman/kind/kind-control-plane" ||
		f["hostname-override"] != "kind-control-plane" || f["node-labels"] != "a=b,c=d" ||
		f["container-runtime-endpoint"] != "unix:///run/containerd/containerd.sock" {
		t.Errorf("flags %v", f)
	}
	if l := parseLabels("a=b, c=d,,e="); len(l) != 3 || l["a"] != "b" || l["c"] != "d" || l["e"] != "" {
		t.Errorf("labels %v", l)
	}
}

func TestNodeRefAndMirrorPod(t *testing.T) {
	static := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "etcd-n", Namespace: "kube-system", UID: "abc",
		Annotations: map[string]string{configHashAnnotation: "abc", configSourceAnnotation: "file"}},
		Spec: v1.PodSpec{NodeName: "n", Containers: []v1.Container{{Name: "etcd"}}}}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "node-uid"}}
	m := mirrorPodFor(static, node)
	if m.UID != "" || m.Annotations[configMirrorAnnotation] != "abc" || m.Annotations[configSourceAnnotation] != "file" {
		t.Errorf("mirror %+v", m.ObjectMeta)
	}
	if len(m.OwnerReferences) != 1 || m.OwnerReferences[0].Kind != "Node" || m.OwnerReferences[0].UID != "node-uid" || !*m.OwnerReferences[0].Controller {
		t.Errorf("owner %+v", m.OwnerReferences)
	}
	if m.Spec.NodeName != "n" {
		t.Errorf("nodeName %q", m.Spec.NodeName)
	}
	if r := nodeRef("n"); r.Kind != "Node" || r.UID != "n" {
		t.Errorf("node ref %+v", r)
	}
}
