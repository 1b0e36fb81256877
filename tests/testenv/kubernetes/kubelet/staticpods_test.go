package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

const etcdManifest = `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
  labels: {component: etcd}
spec:
  hostNetwork: true
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.6.8-0
    command: [etcd, --data-dir=/var/lib/etcd]
`

func TestDecodeStaticPod(t *testing.T) {
	now := time.Now()
	pod, err := decodeStaticPod([]byte(etcdManifest), "Kind-Control-Plane", "/etc/kubernetes/manifests/etcd.yaml", now)
	if err != nil {
		t.Fatal(err)
	}
	if pod.Name != "etcd-kind-control-plane" || pod.Namespace != "kube-system" || pod.Spec.NodeName != "Kind-Control-Plane" {
		t.Errorf("meta %s/%s node %s", pod.Namespace, pod.Name, pod.Spec.NodeName)
	}
	if len(pod.UID) != 32 || pod.Annotations[configHashAnnotation] != string(pod.UID) || pod.Annotations[configSourceAnnotation] != "file" {
		t.Errorf("uid %q annotations %v", pod.UID, pod.Annotations)
	}
	last := pod.Spec.Tolerations[len(pod.Spec.Tolerations)-1]
	if last.Operator != v1.TolerationOpExists || last.Effect != v1.TaintEffectNoExecute {
		t.Errorf("toleration %+v", last)
	}
	again, _ := decodeStaticPod([]byte(etcdManifest), "Kind-Control-Plane", "/etc/kubernetes/manifests/etcd.yaml", now.Add(time.Hour))
	if again.UID != pod.UID {
		t.Error("the UID depends on the manifest only")
	}
	changed, _ := decodeStaticPod([]byte(etcdManifest+"    args: [--x]\n"), "Kind-Control-Plane", "/etc/kubernetes/manifests/etcd.yaml", now)
	if changed.UID == pod.UID {
		t.Error("a changed manifest is a new pod")
	}
	noNS, err := decodeStaticPod([]byte(strings.Replace(etcdManifest, "  namespace: kube-system\n", "", 1)), "n", "/x.yaml", now)
	if err != nil || noNS.Namespace != "default" {
		t.Errorf("namespace defaults to default (config/common.go): %v %v", noNS, err)
	}
	if _, err := decodeStaticPod([]byte("kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n"), "n", "/x.yaml", now); err == nil {
		t.Error("not a pod")
	}
	if isManifestFile(".etcd.yaml.swp") || !isManifestFile("etcd.yaml") || !isManifestFile("x.json") || isManifestFile("notes.txt") {
		t.Error("manifest file names")
	}
}

func shellManifest(name, script string) string {
	return `apiVersion: v1
kind: Pod
metadata: {name: ` + name + `, namespace: kube-system}
spec:
  hostNetwork: true
  containers:
  - name: main
    image: example/sh:1
    command: ["/bin/sh", "-c"]
    args: [` + strconv.Quote(script) + `]
    env: [{name: GREETING, value: hello}]
`
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func readPid(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// TestStaticPodProcesses runs real processes: start, logs, restart on exit, change and
// removal of the manifest.
func TestStaticPodProcesses(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir, logDir, work := t.TempDir(), t.TempDir(), t.TempDir()
	pidFile := filepath.Join(work, "pid")
	m := newStaticPodManager(dir, "node1", "10.0.0.5", logDir, newLogRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	manifest := filepath.Join(dir, "svc.yaml")
	script := "echo $$ > " + pidFile + "; echo $GREETING; echo oops >&2; exec sleep 60"
	if err := os.WriteFile(manifest, []byte(shellManifest("svc", script)), 0o644); err != nil {
		t.Fatal(err)
	}
	m.scan(ctx)
	var view staticPodView
	waitFor(t, "running", func() bool {
		views := m.Snapshot()
		if len(views) == 1 && views[0].Records[0].State == stateRunning && readPid(t, pidFile) != 0 {
			view = views[0]
			return true
		}
		return false
	})
	pid := readPid(t, pidFile)
	if view.Pod.Name != "svc-node1" {
		t.Errorf("name %s", view.Pod.Name)
	}
	st := staticPodStatus(view, "10.0.0.5", v1.PodStatus{}, time.Now())
	if st.Phase != v1.PodRunning || st.PodIP != "10.0.0.5" || !st.ContainerStatuses[0].Ready {
		t.Errorf("status %+v", st)
	}
	body := ""
	waitFor(t, "logs", func() bool {
		target, ok := m.logs.Lookup("kube-system", "svc-node1")
		if !ok {
			return false
		}
		b, err := containerLogs(m.logs, "kube-system", "svc-node1", "main", nil, time.Now())
		body = string(b)
		return err == nil && target.PodName == "svc-node1" && strings.Contains(body, "oops")
	})
	if body != "hello\noops\n" && body != "oops\nhello\n" {
		t.Errorf("logs %q", body)
	}
	logPath := containerLogPath(logDir, "kube-system", "svc-node1", view.Pod.UID, "main", 0)
	if raw, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(raw), " stdout F hello\n") || !strings.Contains(string(raw), " stderr F oops\n") {
		t.Errorf("CRI log file %s: %q %v", logPath, raw, err)
	}

	// A changed manifest: the old process is killed, a new pod starts.
	_ = os.Remove(pidFile)
	if err := os.WriteFile(manifest, []byte(shellManifest("svc", script+" # v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	m.scan(ctx)
	if alive(pid) {
		t.Errorf("old process %d still alive after the manifest changed", pid)
	}
	waitFor(t, "restarted", func() bool { return readPid(t, pidFile) != 0 })
	pid2 := readPid(t, pidFile)
	if views := m.Snapshot(); len(views) != 1 || views[0].Pod.UID == view.Pod.UID {
		t.Errorf("a new static pod: %+v", views)
	}

	// Removed: killed.
	_ = os.Remove(manifest)
	m.scan(ctx)
	if alive(pid2) || len(m.Snapshot()) != 0 {
		t.Errorf("process %d alive after removal, or pod kept", pid2)
	}
	if _, ok := m.logs.Lookup("kube-system", "svc-node1"); ok {
		t.Error("the log source of a removed pod is gone")
	}
}

func TestStaticPodRestartsOnExit(t *testing.T) {
	dir, logDir := t.TempDir(), t.TempDir()
	m := newStaticPodManager(dir, "node1", "10.0.0.5", logDir, newLogRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	if err := os.WriteFile(filepath.Join(dir, "crash.yaml"), []byte(shellManifest("crash", "echo run; exit 3")), 0o644); err != nil {
		t.Fatal(err)
	}
	m.scan(ctx)
	waitFor(t, "a restart", func() bool {
		v := m.Snapshot()
		return len(v) == 1 && v[0].Records[0].RestartCount >= 1
	})
	rec := m.Snapshot()[0].Records[0]
	if rec.LastTerm == nil && rec.Term == nil {
		t.Fatalf("no termination recorded: %+v", rec)
	}
	term := rec.Term
	if term == nil {
		term = rec.LastTerm
	}
	if term.ExitCode != 3 || term.Reason != "Error" {
		t.Errorf("exit %+v", term)
	}
	cancel()
	m.stopAll()
	if len(m.Snapshot()) != 0 {
		t.Error("stopAll leaves nothing")
	}
}
