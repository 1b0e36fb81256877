package main

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// fakeCRI stands for containerd's image service.
type fakeCRI struct {
	mu      sync.Mutex
	present map[string]*runtimeapi.Image
	pullErr error
	pulls   int
}

func newFakeCRI(images ...string) *fakeCRI {
	f := &fakeCRI{present: map[string]*runtimeapi.Image{}}
	for _, i := range images {
		f.add(i)
	}
	return f
}

func (f *fakeCRI) add(image string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.present[image] = &runtimeapi.Image{Id: "sha256:feed", RepoTags: []string{image}, RepoDigests: []string{"repo@sha256:beef"}, Size: 1234}
}

func (f *fakeCRI) ImageStatus(_ context.Context, image string) (*runtimeapi.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.present[image], nil
}

func (f *fakeCRI) PullImage(_ context.Context, image string) (string, error) {
	f.mu.Lock()
	f.pulls++
	err := f.pullErr
	f.mu.Unlock()
	if err != nil {
		return "", err
	}
	f.add(image)
	return "sha256:feed", nil
}

type testWorld struct {
	cri      *fakeCRI
	objects  *fakeObjects
	recorder *record.FakeRecorder
	pool     *ipPool
	released []types.UID
	logDir   string
}

func newTestWorld(t *testing.T, images ...string) *testWorld {
	pool, _ := newIPPool(defaultPodCIDR)
	return &testWorld{cri: newFakeCRI(images...), objects: newFakeObjects(), recorder: record.NewFakeRecorder(1000), pool: pool, logDir: t.TempDir()}
}

func (tw *testWorld) worker(pod *v1.Pod) *podWorker {
	env := &podEnv{
		images:  tw.cri,
		objects: func() objectGetter { return tw.objects },
		events:  &events{recorder: tw.recorder, last: map[string]time.Time{}},
		allocIP: func(p *v1.Pod) (string, error) {
			if p.Spec.HostNetwork {
				return "172.18.0.2", nil
			}
			a, err := tw.pool.Allocate(p.UID)
			return a.String(), err
		},
		releaseIP: func(uid types.UID) { tw.released = append(tw.released, uid); tw.pool.Release(uid) },
		hostIP:    "172.18.0.2",
		logDir:    tw.logDir,
	}
	return newPodWorker(context.Background(), env, pod)
}

// events drains what was recorded so far.
func (tw *testWorld) events() []string {
	var out []string
	for {
		select {
		case e := <-tw.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func hasEvent(events []string, want string) bool {
	for _, e := range events {
		if e == want {
			return true
		}
	}
	return false
}

// settle steps at the same instant until no pull is in flight.
func settle(t *testing.T, w *podWorker, now time.Time) v1.PodStatus {
	t.Helper()
	for i := 0; i < 200; i++ {
		st := w.step(now)
		inFlight := false
		for _, c := range append(append([]*simContainer{}, w.inits...), w.mains...) {
			inFlight = inFlight || c.pull != nil
		}
		if !inFlight {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("a pull never finished")
	return v1.PodStatus{}
}

func testPod(policy v1.RestartPolicy, annotations map[string]string, containers ...v1.Container) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1", Annotations: annotations, ResourceVersion: "1"},
		Spec:       v1.PodSpec{RestartPolicy: policy, NodeName: "n", Containers: containers},
	}
}

func ctr(name, image string, policy v1.PullPolicy) v1.Container {
	return v1.Container{Name: name, Image: image, ImagePullPolicy: policy}
}

func mainStatus(t *testing.T, st v1.PodStatus, name string) v1.ContainerStatus {
	t.Helper()
	s, ok := findStatus(st.ContainerStatuses, name)
	if !ok {
		t.Fatalf("no status for %s in %+v", name, st.ContainerStatuses)
	}
	return *s
}

func TestWorkerNeverPullThenLoaded(t *testing.T) {
	tw := newTestWorld(t)
	w := tw.worker(testPod(v1.RestartPolicyAlways, nil, ctr("app", "app:1", v1.PullNever)))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := w.step(t0)
	s := mainStatus(t, st, "app")
	msg := `Container image "app:1" is not present with pull policy of Never`
	if st.Phase != v1.PodPending || s.State.Waiting == nil || s.State.Waiting.Reason != "ErrImageNeverPull" || s.State.Waiting.Message != msg {
		t.Fatalf("status %+v", st)
	}
	ev := tw.events()
	if !hasEvent(ev, "Warning ErrImageNeverPull "+msg) || !hasEvent(ev, "Warning Failed Error: ErrImageNeverPull") {
		t.Errorf("events %q", ev)
	}
	// `kind load` puts the image in containerd: the next check (a few seconds later) starts it.
	tw.cri.add("app:1")
	if st = w.step(t0.Add(time.Second)); st.Phase != v1.PodPending {
		t.Errorf("re-checked too early: %s", st.Phase)
	}
	st = w.step(t0.Add(recheckPeriod))
	s = mainStatus(t, st, "app")
	if st.Phase != v1.PodRunning || s.State.Running == nil || !s.Ready || s.Started == nil || !*s.Started {
		t.Fatalf("status %+v", st)
	}
	if !strings.HasPrefix(s.ContainerID, "containerd://") || len(s.ContainerID) != len("containerd://")+64 {
		t.Errorf("container ID %q", s.ContainerID)
	}
	if s.ImageID != "repo@sha256:beef" || s.Image != "app:1" {
		t.Errorf("image %q id %q", s.Image, s.ImageID)
	}
	if st.PodIP != "10.244.0.2" || st.HostIP != "172.18.0.2" || st.StartTime == nil {
		t.Errorf("ips %q %q", st.PodIP, st.HostIP)
	}
	if c := condition(st, v1.PodReady); c.Status != v1.ConditionTrue {
		t.Errorf("ready %+v", c)
	}
	ev = tw.events()
	for _, want := range []string{
		`Normal Pulled Container image "app:1" already present on machine and can be accessed by the pod`,
		"Normal Created Container created", "Normal Started Container started",
	} {
		if !hasEvent(ev, want) {
			t.Errorf("missing event %q in %q", want, ev)
		}
	}
	// Logs: the default lines, through the log endpoint's code.
	reg := newLogRegistry()
	reg.Register("ns", "p", "uid-1", w.logTarget)
	body, err := containerLogs(reg, "ns", "p", "app", url.Values{}, time.Now())
	if err != nil || !strings.Contains(string(body), "simulated kubelet") || !strings.Contains(string(body), "image: app:1") {
		t.Errorf("logs %q %v", body, err)
	}
}

func TestWorkerCrashLoop(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	w := tw.worker(testPod(v1.RestartPolicyAlways, map[string]string{annotationFault: "crashloop"}, ctr("app", "app:1", v1.PullIfNotPresent)))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(sec float64) v1.ContainerStatus {
		return mainStatus(t, w.step(t0.Add(time.Duration(sec*float64(time.Second)))), "app")
	}
	if s := at(0); s.State.Running == nil || s.RestartCount != 0 {
		t.Fatalf("t=0 %+v", s)
	}
	s := at(1)
	if s.State.Terminated == nil || s.State.Terminated.ExitCode != 1 || s.State.Terminated.Reason != "Error" {
		t.Fatalf("t=1 exits 1: %+v", s.State)
	}
	first := s.State.Terminated.ContainerID
	// The first exit restarts at once (no back-off entry yet).
	s = at(2)
	if s.State.Running == nil || s.RestartCount != 1 || s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ContainerID != first {
		t.Fatalf("t=2 restarted: %+v", s)
	}
	if s = at(3); s.State.Terminated == nil {
		t.Fatalf("t=3 exits again: %+v", s.State)
	}
	s = at(4)
	wantMsg := "back-off 10s restarting failed container=app pod=p_ns(uid-1)"
	if s.State.Waiting == nil || s.State.Waiting.Reason != "CrashLoopBackOff" || s.State.Waiting.Message != wantMsg || s.RestartCount != 1 {
		t.Fatalf("t=4 back-off: %+v", s)
	}
	if s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ExitCode != 1 {
		t.Errorf("lastState %+v", s.LastTerminationState)
	}
	if st := w.step(t0.Add(5 * time.Second)); st.Phase != v1.PodRunning {
		t.Errorf("a crash-looping pod is Running: %s", st.Phase)
	}
	if ev := tw.events(); !hasEvent(ev, "Warning BackOff Back-off restarting failed container app in pod p_ns(uid-1)") {
		t.Errorf("events %q", ev)
	}
	if s = at(12.9); s.State.Waiting == nil {
		t.Errorf("still backing off at 12.9: %+v", s.State)
	}
	if s = at(13); s.State.Running == nil || s.RestartCount != 2 {
		t.Fatalf("t=13 restart: %+v", s)
	}
	at(14)
	if s = at(15); s.State.Waiting == nil || !strings.HasPrefix(s.State.Waiting.Message, "back-off 20s ") {
		t.Errorf("second back-off 20s: %+v", s.State)
	}
}

func TestWorkerBackoffSeconds(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	w := tw.worker(testPod(v1.RestartPolicyAlways, map[string]string{annotationFault: "crashloop", annotationBackoffSeconds: "2", annotationRunSeconds: "0.5"},
		ctr("app", "app:1", v1.PullIfNotPresent)))
	t0 := time.Now()
	for _, step := range []float64{0, 0.5, 1.5, 2, 3} {
		w.step(t0.Add(time.Duration(step * float64(time.Second))))
	}
	s := mainStatus(t, w.step(t0.Add(3*time.Second)), "app")
	if s.State.Waiting == nil || !strings.HasPrefix(s.State.Waiting.Message, "back-off 2s ") {
		t.Fatalf("%+v", s.State)
	}
	if s = mainStatus(t, w.step(t0.Add(4*time.Second)), "app"); s.State.Running == nil || s.RestartCount != 2 {
		t.Errorf("restart after 2 s: %+v", s)
	}
}

func TestWorkerJobs(t *testing.T) {
	cases := []struct {
		name     string
		policy   v1.RestartPolicy
		fault    string
		phase    v1.PodPhase
		exitCode int32
		reason   string
	}{
		{"succeeds", v1.RestartPolicyNever, "", v1.PodSucceeded, 0, "Completed"},
		{"fails", v1.RestartPolicyNever, "exit=3", v1.PodFailed, 3, "Error"},
		{"onfailure retries", v1.RestartPolicyOnFailure, "exit=2", v1.PodRunning, 2, "Error"},
		{"onfailure exit 0", v1.RestartPolicyOnFailure, "exit=0", v1.PodSucceeded, 0, "Completed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tw := newTestWorld(t, "job:1")
			w := tw.worker(testPod(tc.policy, map[string]string{annotationFault: tc.fault}, ctr("job", "job:1", v1.PullIfNotPresent)))
			t0 := time.Now()
			w.step(t0)
			st := w.step(t0.Add(time.Second))
			s := mainStatus(t, st, "job")
			if st.Phase != tc.phase || s.State.Terminated == nil || s.State.Terminated.ExitCode != tc.exitCode || s.State.Terminated.Reason != tc.reason {
				t.Fatalf("phase %s state %+v", st.Phase, s.State)
			}
			if isTerminalPhase(tc.phase) {
				if len(tw.released) != 1 {
					t.Errorf("the IP of a finished pod is released: %v", tw.released)
				}
				// Nothing moves afterwards.
				st2 := w.step(t0.Add(time.Minute))
				if st2.Phase != tc.phase || mainStatus(t, st2, "job").RestartCount != 0 {
					t.Errorf("after the end: %+v", st2)
				}
				want := "PodCompleted"
				if tc.phase == v1.PodFailed {
					want = "PodFailed"
				}
				if c := condition(st2, v1.PodReady); c.Reason != want {
					t.Errorf("Ready %+v", c)
				}
			}
		})
	}
}

func TestWorkerInitContainers(t *testing.T) {
	tw := newTestWorld(t, "app:1", "init:1")
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("app", "app:1", v1.PullIfNotPresent))
	pod.Spec.InitContainers = []v1.Container{ctr("migrate", "init:1", v1.PullIfNotPresent)}
	w := tw.worker(pod)
	t0 := time.Now()
	st := w.step(t0)
	if st.Phase != v1.PodPending || st.InitContainerStatuses[0].State.Running == nil {
		t.Fatalf("init running: %+v", st)
	}
	if s := mainStatus(t, st, "app"); s.State.Waiting == nil || s.State.Waiting.Reason != "PodInitializing" {
		t.Errorf("main waits: %+v", s.State)
	}
	if c := condition(st, v1.PodInitialized); c.Status != v1.ConditionFalse || c.Message != "containers with incomplete status: [migrate]" {
		t.Errorf("Initialized %+v", c)
	}
	st = w.step(t0.Add(500 * time.Millisecond))
	init := st.InitContainerStatuses[0]
	if init.State.Terminated == nil || init.State.Terminated.Reason != "Completed" || !init.Ready {
		t.Fatalf("init completed: %+v", init)
	}
	if s := mainStatus(t, st, "app"); s.State.Running == nil || st.Phase != v1.PodRunning {
		t.Errorf("main started: %s %+v", st.Phase, s.State)
	}
	if c := condition(st, v1.PodInitialized); c.Status != v1.ConditionTrue {
		t.Errorf("Initialized %+v", c)
	}
}

func TestWorkerPullFailureAndBackOff(t *testing.T) {
	tw := newTestWorld(t)
	tw.cri.pullErr = errors.New("rpc error: code = NotFound desc = not found")
	w := tw.worker(testPod(v1.RestartPolicyAlways, nil, ctr("app", "app:latest", v1.PullAlways)))
	t0 := time.Now()
	st := settle(t, w, t0)
	s := mainStatus(t, st, "app")
	if s.State.Waiting == nil || s.State.Waiting.Reason != "ErrImagePull" || s.State.Waiting.Message != "rpc error: code = NotFound desc = not found" {
		t.Fatalf("ErrImagePull: %+v", s.State)
	}
	ev := tw.events()
	for _, want := range []string{`Normal Pulling Pulling image "app:latest"`,
		`Warning Failed Failed to pull image "app:latest": rpc error: code = NotFound desc = not found`,
		"Warning Failed Error: ErrImagePull"} {
		if !hasEvent(ev, want) {
			t.Errorf("missing %q in %q", want, ev)
		}
	}
	s = mainStatus(t, w.step(t0.Add(2*time.Second)), "app")
	want := `Back-off pulling image "app:latest": ErrImagePull: rpc error: code = NotFound desc = not found`
	if s.State.Waiting == nil || s.State.Waiting.Reason != "ImagePullBackOff" || s.State.Waiting.Message != want {
		t.Fatalf("ImagePullBackOff: %+v", s.State)
	}
	ev = tw.events()
	if !hasEvent(ev, `Normal BackOff Back-off pulling image "app:latest"`) || !hasEvent(ev, "Warning Failed Error: ImagePullBackOff") {
		t.Errorf("events %q", ev)
	}
	if tw.cri.pulls != 1 {
		t.Errorf("no pull during the back-off: %d", tw.cri.pulls)
	}
	// The registry comes back: the next try after 10 s pulls.
	tw.cri.mu.Lock()
	tw.cri.pullErr = nil
	tw.cri.mu.Unlock()
	st = settle(t, w, t0.Add(10*time.Second))
	st = w.step(t0.Add(10 * time.Second))
	if s = mainStatus(t, st, "app"); s.State.Running == nil {
		t.Fatalf("running after the pull: %+v", s.State)
	}
	found := false
	for _, e := range tw.events() {
		found = found || strings.HasPrefix(e, `Normal Pulled Successfully pulled image "app:latest" in `)
	}
	if !found {
		t.Error("no Successfully pulled event")
	}
}

func TestWorkerMissingConfig(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	c := ctr("app", "app:1", v1.PullIfNotPresent)
	c.Env = []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{
		LocalObjectReference: v1.LocalObjectReference{Name: "later"}, Key: "k"}}}}
	w := tw.worker(testPod(v1.RestartPolicyAlways, nil, c))
	t0 := time.Now()
	s := mainStatus(t, w.step(t0), "app")
	if s.State.Waiting == nil || s.State.Waiting.Reason != "CreateContainerConfigError" || s.State.Waiting.Message != `configmap "later" not found` {
		t.Fatalf("%+v", s.State)
	}
	if ev := tw.events(); !hasEvent(ev, `Warning Failed Error: configmap "later" not found`) {
		t.Errorf("events %q", ev)
	}
	tw.objects.configMaps["ns/later"] = &v1.ConfigMap{Data: map[string]string{"k": "v"}}
	if s = mainStatus(t, w.step(t0.Add(recheckPeriod)), "app"); s.State.Running == nil {
		t.Errorf("started once the ConfigMap exists: %+v", s.State)
	}
}

func TestWorkerMissingVolume(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("app", "app:1", v1.PullIfNotPresent))
	pod.Spec.Volumes = []v1.Volume{{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "later"}}}}}
	w := tw.worker(pod)
	t0 := time.Now()
	st := w.step(t0)
	s := mainStatus(t, st, "app")
	if st.Phase != v1.PodPending || s.State.Waiting == nil || s.State.Waiting.Reason != "ContainerCreating" || st.PodIP != "" {
		t.Fatalf("%+v", st)
	}
	if c := condition(st, v1.PodReadyToStartContainers); c.Status != v1.ConditionFalse {
		t.Errorf("no sandbox yet: %+v", c)
	}
	if ev := tw.events(); !hasEvent(ev, `Warning FailedMount MountVolume.SetUp failed for volume "cfg" : configmap "later" not found`) {
		t.Errorf("events %q", ev)
	}
	// The same failure is not recorded again at once.
	w.step(t0.Add(recheckPeriod))
	if ev := tw.events(); len(ev) != 0 {
		t.Errorf("repeated too soon: %q", ev)
	}
	tw.objects.configMaps["ns/later"] = &v1.ConfigMap{}
	if st = w.step(t0.Add(2 * recheckPeriod)); st.Phase != v1.PodRunning || st.PodIP == "" {
		t.Errorf("running once the ConfigMap exists: %+v", st)
	}
}

func TestWorkerKill(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("app", "app:1", v1.PullIfNotPresent), ctr("side", "missing:1", v1.PullNever))
	w := tw.worker(pod)
	t0 := time.Now()
	w.step(t0)
	tw.events()
	deleting := pod.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: t0.Add(time.Second)}
	w.setPod(deleting)
	st := w.kill(t0.Add(time.Second))
	app := mainStatus(t, st, "app")
	if app.State.Terminated == nil || app.State.Terminated.ExitCode != 0 || app.State.Terminated.Reason != "Completed" {
		t.Errorf("app %+v", app.State)
	}
	side := mainStatus(t, st, "side")
	if side.State.Terminated == nil || side.State.Terminated.ExitCode != 137 || side.State.Terminated.Reason != "ContainerStatusUnknown" {
		t.Errorf("never-started container %+v", side.State)
	}
	if st.Phase != v1.PodFailed {
		t.Errorf("phase %s", st.Phase)
	}
	if ev := tw.events(); !hasEvent(ev, "Normal Killing Stopping container app") || hasEvent(ev, "Normal Killing Stopping container side") {
		t.Errorf("events %q", ev)
	}
}

func TestWorkerKillAllRunningSucceeds(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	w := tw.worker(testPod(v1.RestartPolicyAlways, nil, ctr("app", "app:1", v1.PullIfNotPresent)))
	t0 := time.Now()
	w.step(t0)
	if st := w.kill(t0.Add(time.Second)); st.Phase != v1.PodSucceeded {
		t.Errorf("a service stopped in its grace period: %s", st.Phase)
	}
}

func TestWorkerNeverReady(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	c := ctr("app", "app:1", v1.PullIfNotPresent)
	c.ReadinessProbe = &v1.Probe{PeriodSeconds: 5, ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/ready"}}}
	w := tw.worker(testPod(v1.RestartPolicyAlways, map[string]string{annotationFault: "never-ready"}, c))
	t0 := time.Now()
	w.step(t0)
	st := w.step(t0.Add(time.Second))
	if s := mainStatus(t, st, "app"); s.State.Running == nil || s.Ready || st.Phase != v1.PodRunning {
		t.Fatalf("%+v", st)
	}
	if c := condition(st, v1.ContainersReady); c.Status != v1.ConditionFalse || c.Message != "containers with unready status: [app]" {
		t.Errorf("ContainersReady %+v", c)
	}
	count := func() int {
		n := 0
		for _, e := range tw.events() {
			if e == "Warning Unhealthy Readiness probe failed: HTTP probe failed with statuscode: 503" {
				n++
			}
		}
		return n
	}
	if n := count(); n != 1 {
		t.Errorf("first Unhealthy: %d", n)
	}
	w.step(t0.Add(3 * time.Second))
	w.step(t0.Add(5 * time.Second))
	if n := count(); n != 0 {
		t.Errorf("not again before the period: %d", n)
	}
	w.step(t0.Add(6 * time.Second))
	if n := count(); n != 1 {
		t.Errorf("again after the period (5 s): %d", n)
	}
}

func TestWorkerReadinessDelay(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	c := ctr("app", "app:1", v1.PullIfNotPresent)
	c.ReadinessProbe = &v1.Probe{InitialDelaySeconds: 5}
	w := tw.worker(testPod(v1.RestartPolicyAlways, nil, c))
	t0 := time.Now()
	if s := mainStatus(t, w.step(t0), "app"); s.Ready {
		t.Error("ready before the probe's initial delay")
	}
	if s := mainStatus(t, w.step(t0.Add(5*time.Second)), "app"); !s.Ready {
		t.Error("not ready after the initial delay")
	}
}

func TestWorkerAdoptsRunningPod(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("app", "app:1", v1.PullIfNotPresent))
	started := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	pod.Status = v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.244.0.9", StartTime: &started,
		ContainerStatuses: []v1.ContainerStatus{{Name: "app", Ready: true, Started: ptr.To(true), RestartCount: 3,
			ContainerID: "containerd://old", ImageID: "id", State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: started}}}}}
	// What the previous kubelet wrote for instance 3.
	if err := writeLogLines(containerLogPath(tw.logDir, "ns", "p", "uid-1", "app", 3), time.Now(), []string{"before the restart"}); err != nil {
		t.Fatal(err)
	}
	w := tw.worker(pod)
	st := w.step(time.Now())
	reg := newLogRegistry()
	reg.Register("ns", "p", "uid-1", w.logTarget)
	if body, err := containerLogs(reg, "ns", "p", "app", nil, time.Now()); err != nil || string(body) != "before the restart\n" {
		t.Errorf("logs of an adopted container: %q %v", body, err)
	}
	s := mainStatus(t, st, "app")
	if s.ContainerID != "containerd://old" || s.RestartCount != 3 || !s.Ready || st.PodIP != "10.244.0.9" || !st.StartTime.Equal(&started) {
		t.Errorf("adopted %+v", st)
	}
	if ev := tw.events(); hasEvent(ev, "Normal Started Container started") {
		t.Errorf("an adopted container is not started again: %q", ev)
	}
}

func TestWorkerFinishedPodIsLeftAlone(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	pod := testPod(v1.RestartPolicyNever, nil, ctr("app", "app:1", v1.PullIfNotPresent))
	pod.Status = v1.PodStatus{Phase: v1.PodSucceeded, Reason: "x"}
	w := tw.worker(pod)
	st := w.step(time.Now())
	if st.Phase != v1.PodSucceeded || w.changed(st) {
		t.Errorf("a finished pod's status is not rewritten: %+v", st)
	}
}

func TestWorkerCustomLog(t *testing.T) {
	tw := newTestWorld(t, "app:1")
	w := tw.worker(testPod(v1.RestartPolicyAlways, map[string]string{annotationLog: "hello\nworld"}, ctr("app", "app:1", v1.PullIfNotPresent)))
	w.step(time.Now())
	reg := newLogRegistry()
	reg.Register("ns", "p", "uid-1", w.logTarget)
	body, err := containerLogs(reg, "ns", "p", "app", url.Values{"tailLines": {"1"}}, time.Now())
	if err != nil || string(body) != "world\n" {
		t.Errorf("%q %v", body, err)
	}
}
