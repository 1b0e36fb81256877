package main

// Static pods: the kubelet's file source (pkg/kubelet/config/file.go, config/common.go)
// read from the static pod path every 2 s, and each container run as a host process (the
// node is the host: etcd, kube-apiserver, kube-controller-manager and kube-scheduler are on
// PATH, hostPath volumes are already in place). Restarts follow the kubelet's container
// back-off, shortened to 1 s doubling to 10 s so a control plane that starts before etcd
// is up recovers quickly.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
)

// Annotations of static and mirror pods (pkg/kubelet/types/pod_update.go).
const (
	configHashAnnotation   = "kubernetes.io/config.hash"
	configMirrorAnnotation = "kubernetes.io/config.mirror"
	configSourceAnnotation = "kubernetes.io/config.source"
	configSeenAnnotation   = "kubernetes.io/config.seen"

	staticRestartInitial = time.Second
	staticRestartMax     = 10 * time.Second
	staticStopGrace      = 5 * time.Second
)

// staticPodUID is the kubelet's generated UID: a 128-bit FNV hash of the manifest, the
// host and the file (config/common.go applyDefaults), hex encoded. It is also the
// config.hash annotation, so any change of the file gives a new pod.
func staticPodUID(content []byte, nodeName, path string) types.UID {
	h := fnv.New128a()
	h.Write(content)
	fmt.Fprintf(h, "host:%s", nodeName)
	fmt.Fprintf(h, "file:%s", path)
	return types.UID(hex.EncodeToString(h.Sum(nil)))
}

// decodeStaticPod decodes a manifest and applies the kubelet's static pod defaults
// (config/common.go applyDefaults): name suffixed with the node name, namespace "default"
// when empty, nodeName, config annotations, a toleration of every NoExecute taint.
func decodeStaticPod(content []byte, nodeName, path string, now time.Time) (*v1.Pod, error) {
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(content, nil, nil)
	if err != nil {
		return nil, err
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, fmt.Errorf("not a Pod: %T", obj)
	}
	if pod.Name == "" {
		return nil, errors.New("the pod has no name")
	}
	if len(pod.Spec.Containers) == 0 {
		return nil, errors.New("the pod has no containers")
	}
	pod.UID = staticPodUID(content, nodeName, path)
	pod.Name = pod.Name + "-" + strings.ToLower(nodeName)
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	pod.Spec.NodeName = nodeName
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[configHashAnnotation] = string(pod.UID)
	pod.Annotations[configSourceAnnotation] = "file"
	pod.Annotations[configSeenAnnotation] = now.Format(time.RFC3339Nano)
	pod.Spec.Tolerations = append(pod.Spec.Tolerations, v1.Toleration{Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute})
	pod.Status.Phase = v1.PodPending
	return pod, nil
}

// spawner starts processes from one goroutine locked to its OS thread, so that
// Pdeathsig (sent when the starting thread dies) only fires when the kubelet dies.
type spawner struct{ reqs chan spawnRequest }

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnRequest)}
	go func() {
		runtime.LockOSThread() // never unlocked: this thread lives as long as the process
		for r := range s.reqs {
			r.done <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) Start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s.reqs <- spawnRequest{cmd: cmd, done: done}
	return <-done
}

func newContainerID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "containerd://" + hex.EncodeToString(b)
}

type staticPodManager struct {
	dir, nodeName, nodeIP, logDir string
	logs                          *logRegistry
	spawn                         *spawner

	mu   sync.Mutex
	pods map[string]*staticPod // by manifest path
	bad  map[string]types.UID  // manifests that failed to decode, logged once
}

type staticPod struct {
	path       string
	pod        *v1.Pod
	started    time.Time
	containers []*staticContainer
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

type staticContainer struct {
	pod    *v1.Pod
	spec   v1.Container
	logDir string
	spawn  *spawner

	mu    sync.Mutex
	rec   containerRecord
	paths map[string]string // containerID -> log file
}

func newStaticPodManager(dir, nodeName, nodeIP, logDir string, logs *logRegistry) *staticPodManager {
	return &staticPodManager{dir: dir, nodeName: nodeName, nodeIP: nodeIP, logDir: logDir, logs: logs,
		spawn: newSpawner(), pods: map[string]*staticPod{}, bad: map[string]types.UID{}}
}

// Run scans at once, then every 2 s; when ctx ends it stops every static pod and returns.
func (m *staticPodManager) Run(ctx context.Context) {
	klog.Infof("static pods: watching %s", m.dir)
	m.scan(ctx)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.stopAll()
			return
		case <-t.C:
			m.scan(ctx)
		}
	}
}

func isManifestFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func (m *staticPodManager) scan(ctx context.Context) {
	entries, err := os.ReadDir(m.dir)
	if err != nil && !os.IsNotExist(err) {
		klog.Warningf("static pods: %v", err)
		return
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || !isManifestFile(e.Name()) {
			continue
		}
		path := filepath.Join(m.dir, e.Name())
		content, err := os.ReadFile(path)
		if err != nil {
			klog.Warningf("static pods: %v", err)
			seen[path] = true // keep what runs
			continue
		}
		seen[path] = true
		uid := staticPodUID(content, m.nodeName, path)
		m.mu.Lock()
		existing := m.pods[path]
		m.mu.Unlock()
		if existing != nil && existing.pod.UID == uid {
			continue
		}
		pod, err := decodeStaticPod(content, m.nodeName, path, time.Now())
		if err != nil {
			if m.bad[path] != uid {
				klog.Errorf("static pods: %s: %v (what runs from it, if anything, keeps running)", path, err)
				m.bad[path] = uid
			}
			continue
		}
		delete(m.bad, path)
		if existing != nil {
			klog.Infof("static pods: %s changed: restarting %s/%s", path, pod.Namespace, pod.Name)
			m.stop(path)
		}
		m.start(ctx, path, pod)
	}
	m.mu.Lock()
	var gone []string
	for path := range m.pods {
		if !seen[path] {
			gone = append(gone, path)
		}
	}
	m.mu.Unlock()
	for _, path := range gone {
		klog.Infof("static pods: %s removed", path)
		m.stop(path)
	}
}

func (m *staticPodManager) start(ctx context.Context, path string, pod *v1.Pod) {
	pctx, cancel := context.WithCancel(ctx)
	sp := &staticPod{path: path, pod: pod, started: time.Now(), cancel: cancel}
	if len(pod.Spec.InitContainers) > 0 {
		klog.Warningf("static pods: %s/%s: init containers are not run by the simulated kubelet", pod.Namespace, pod.Name)
	}
	for _, c := range pod.Spec.Containers {
		sc := &staticContainer{pod: pod, spec: c, logDir: m.logDir, spawn: m.spawn, paths: map[string]string{},
			rec: containerRecord{Name: c.Name, Image: c.Image, WaitReason: "ContainerCreating"}}
		sp.containers = append(sp.containers, sc)
		sp.wg.Add(1)
		go func() {
			defer sp.wg.Done()
			sc.supervise(pctx)
		}()
	}
	m.mu.Lock()
	m.pods[path] = sp
	m.mu.Unlock()
	m.logs.Register(pod.Namespace, pod.Name, pod.UID, sp.logTarget(m.nodeIP))
	klog.Infof("static pods: started %s/%s (uid %s) from %s", pod.Namespace, pod.Name, pod.UID, path)
}

func (m *staticPodManager) stop(path string) {
	m.mu.Lock()
	sp := m.pods[path]
	delete(m.pods, path)
	m.mu.Unlock()
	if sp == nil {
		return
	}
	sp.cancel()
	sp.wg.Wait()
	m.logs.Unregister(sp.pod.Namespace, sp.pod.Name, sp.pod.UID)
	klog.Infof("static pods: stopped %s/%s", sp.pod.Namespace, sp.pod.Name)
}

func (m *staticPodManager) stopAll() {
	m.mu.Lock()
	var paths []string
	for p := range m.pods {
		paths = append(paths, p)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.stop(p)
		}()
	}
	wg.Wait()
}

// staticPodView is a copy of a static pod and its containers for the mirror pods.
type staticPodView struct {
	Pod     *v1.Pod
	Started time.Time
	Records []containerRecord
}

func (m *staticPodManager) Snapshot() []staticPodView {
	m.mu.Lock()
	pods := make([]*staticPod, 0, len(m.pods))
	for _, sp := range m.pods {
		pods = append(pods, sp)
	}
	m.mu.Unlock()
	sort.Slice(pods, func(i, j int) bool { return pods[i].path < pods[j].path })
	var out []staticPodView
	for _, sp := range pods {
		out = append(out, staticPodView{Pod: sp.pod.DeepCopy(), Started: sp.started, Records: sp.records()})
	}
	return out
}

func (sp *staticPod) records() []containerRecord {
	var out []containerRecord
	for _, c := range sp.containers {
		c.mu.Lock()
		out = append(out, c.rec)
		c.mu.Unlock()
	}
	return out
}

// staticPodStatus: static pods report Running/Ready while their processes run; they are
// host-network pods, so host and pod IP are the node's.
func staticPodStatus(v staticPodView, nodeIP string, old v1.PodStatus, now time.Time) v1.PodStatus {
	podIP := ""
	if v.Pod.Spec.HostNetwork {
		podIP = nodeIP
	}
	return buildPodStatus(v.Pod, statusInput{
		Main: v.Records, ReadyToStart: true, HostIP: nodeIP, PodIP: podIP,
		StartTime: v.Started, Now: now, OldStatus: old,
	})
}

func (sp *staticPod) logTarget(nodeIP string) logSource {
	return func() logTarget {
		t := logTarget{PodName: sp.pod.Name, Paths: map[string]string{}}
		for _, c := range sp.pod.Spec.Containers {
			t.Containers = append(t.Containers, c.Name)
		}
		t.Status = staticPodStatus(staticPodView{Pod: sp.pod, Started: sp.started, Records: sp.records()}, nodeIP, v1.PodStatus{}, time.Now())
		for _, c := range sp.containers {
			c.mu.Lock()
			for id, p := range c.paths {
				t.Paths[id] = p
			}
			c.mu.Unlock()
		}
		return t
	}
}

func (c *staticContainer) update(f func(r *containerRecord)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.rec)
}

// command is the container's argv: command + args (no image entrypoint: the binaries are
// the host's).
func (c *staticContainer) command() []string {
	return append(append([]string{}, c.spec.Command...), c.spec.Args...)
}

// supervise runs the container's process until ctx ends, restarting it when it exits.
func (c *staticContainer) supervise(ctx context.Context) {
	backoff := staticRestartInitial
	name := c.pod.Namespace + "/" + c.pod.Name + "/" + c.spec.Name
	for ctx.Err() == nil {
		c.mu.Lock()
		restart := c.rec.RestartCount
		if c.rec.State == stateTerminated {
			restart++
		}
		c.mu.Unlock()
		id := newContainerID()
		logPath := containerLogPath(c.logDir, c.pod.Namespace, c.pod.Name, c.pod.UID, c.spec.Name, restart)
		started := time.Now()
		cmd, logFile, err := c.startProcess(logPath)
		if err != nil {
			klog.Errorf("static pods: %s: %v", name, err)
			c.update(func(r *containerRecord) {
				if r.State == stateTerminated {
					r.LastTerm, r.RestartCount = r.Term, restart
				}
				r.State, r.ContainerID, r.Ready, r.Started = stateTerminated, id, false, false
				r.Term = &v1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error(),
					ContainerID: id, StartedAt: metaTime(started), FinishedAt: metaTime(time.Now())}
			})
		} else {
			klog.Infof("static pods: %s: started pid %d: %s", name, cmd.Process.Pid, strings.Join(c.command(), " "))
			c.mu.Lock()
			if c.rec.State == stateTerminated {
				c.rec.LastTerm, c.rec.RestartCount = c.rec.Term, restart
			}
			c.rec.State, c.rec.ContainerID, c.rec.StartedAt = stateRunning, id, started
			c.rec.Term, c.rec.Ready, c.rec.Started = nil, true, true
			c.rec.WaitReason, c.rec.WaitMessage = "", ""
			c.paths[id] = logPath
			c.mu.Unlock()
			code, how := c.wait(ctx, cmd)
			_ = logFile.Close()
			klog.Infof("static pods: %s: pid %d %s", name, cmd.Process.Pid, how)
			c.update(func(r *containerRecord) {
				r.State, r.Ready, r.Started = stateTerminated, false, false
				r.Term = &v1.ContainerStateTerminated{ExitCode: code, Reason: terminatedReason(code), ContainerID: id,
					StartedAt: metaTime(started), FinishedAt: metaTime(time.Now())}
			})
			if time.Since(started) > 2*staticRestartMax {
				backoff = staticRestartInitial
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, staticRestartMax)
	}
}

func (c *staticContainer) startProcess(logPath string) (*exec.Cmd, *criLogFile, error) {
	argv := c.command()
	if len(argv) == 0 {
		return nil, nil, errors.New("no command: the simulated kubelet runs static pod containers from their command")
	}
	logFile, err := openCRILogFile(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.spec.WorkingDir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Env = os.Environ()
	for _, e := range c.spec.Env {
		if e.ValueFrom == nil {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
	}
	stdout, stderr := logFile.stream("stdout"), logFile.stream("stderr")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.spawn.Start(cmd); err != nil {
		_ = logFile.Close()
		return nil, nil, err
	}
	return cmd, logFile, nil
}

// wait returns the exit code as containerd reports it (128+signal when killed) once the
// process exits, or kills the process group when ctx ends (SIGTERM, SIGKILL after the grace
// period).
func (c *staticContainer) wait(ctx context.Context, cmd *exec.Cmd) (int32, string) {
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is read from ProcessState below
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		pgid := cmd.Process.Pid // Setpgid: the group ID is the process ID
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(staticStopGrace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
	}
	st := cmd.ProcessState
	if st == nil {
		return 128, "exited (no state)"
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return int32(128 + int(ws.Signal())), "killed by " + ws.Signal().String()
	}
	return int32(st.ExitCode()), fmt.Sprintf("exited with %d", st.ExitCode())
}
