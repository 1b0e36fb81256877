package main

// The per-pod worker: one pod's life as the kubelet's pod worker drives it
// (pkg/kubelet/pod_workers.go, kubelet.go SyncPod, kuberuntime/kuberuntime_manager.go
// SyncPod: volumes, sandbox, init containers one by one, then the containers, each through
// doBackOff and startContainer: EnsureImageExists, generateContainerConfig, create, start).
// Nothing runs: a container is a record whose state changes with time. step() is driven by
// pods.go every 250 ms and on every pod update; worker_test.go drives it with a fake
// clock and fake CRI.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

const (
	recheckPeriod   = 3 * time.Second // missing image (Never), missing config, volume SetUp
	terminatedShown = time.Second     // an exited container shows Terminated before back-off
	pullBackOffShow = time.Second     // ErrImagePull shows before ImagePullBackOff
)

// Waiting reasons (kubelet_pods.go, images/types.go, kuberuntime/kuberuntime_container.go).
const (
	reasonContainerCreating          = "ContainerCreating"
	reasonPodInitializing            = "PodInitializing"
	reasonErrImagePull               = "ErrImagePull"
	reasonImagePullBackOff           = "ImagePullBackOff"
	reasonErrImageNeverPull          = "ErrImageNeverPull"
	reasonInvalidImageName           = "InvalidImageName"
	reasonImageInspectError          = "ImageInspectError"
	reasonCreateContainerConfigError = "CreateContainerConfigError"
	reasonCrashLoopBackOff           = "CrashLoopBackOff"
)

// imageService is the CRI image API the worker uses (criClient in the node).
type imageService interface {
	ImageStatus(ctx context.Context, image string) (*runtimeapi.Image, error)
	PullImage(ctx context.Context, image string) (string, error)
}

// podEnv is what a worker needs from the node.
type podEnv struct {
	images    imageService
	objects   func() objectGetter
	events    *events
	allocIP   func(pod *v1.Pod) (string, error)
	releaseIP func(uid types.UID)
	hostIP    string
	logDir    string
}

type pullResult struct {
	imageID string
	size    uint64
	took    time.Duration
	err     error
}

type simContainer struct {
	spec    v1.Container
	init    bool
	sidecar bool
	rec     containerRecord
	plan    containerPlan

	everStarted  bool
	imageOK      bool
	imageID      string
	pull         chan pullResult // a pull in flight
	pullFailures int
	pullRetryAt  time.Time
	pullFailedAt time.Time
	lastPullErr  string
	nextCheck    time.Time

	startedAfter, readyAfter time.Duration
	exits                    int
	backoff                  time.Duration
	restartAt                time.Time
	exitedAt                 time.Time
	restartPending           bool
	lastUnhealthy            time.Time
	paths                    map[string]string // container ID -> log file
}

type podWorker struct {
	ctx    context.Context
	env    *podEnv
	pod    *v1.Pod
	faults podFaults

	inits, mains    []*simContainer
	volumesOK       bool
	nextVolumeCheck time.Time
	podIP           string
	startTime       time.Time
	finished        bool // terminal phase reached, IP released
	killed          bool // deletion: containers stopped
	deleted         bool // the pod object was deleted
	frozen          bool // terminal when first seen: its status is never rewritten
	ipErr           string

	last    v1.PodStatus // the status last written
	written bool

	mu       sync.Mutex
	snapshot logTarget
}

func newPodWorker(ctx context.Context, env *podEnv, pod *v1.Pod) *podWorker {
	w := &podWorker{ctx: ctx, env: env, pod: pod}
	w.parseFaults()
	def := defaultWaitReason(pod)
	mk := func(c v1.Container, init bool) *simContainer {
		sc := &simContainer{spec: c, init: init, sidecar: init && isSidecar(&c), paths: map[string]string{},
			rec: containerRecord{Name: c.Name, Image: c.Image, WaitReason: def}}
		sc.startedAfter, sc.readyAfter = probeDelays(&sc.spec)
		if init {
			sc.plan = w.faults.initContainerPlan(sc.sidecar)
		} else {
			sc.plan = w.faults.mainContainerPlan(pod.Spec.RestartPolicy)
		}
		return sc
	}
	for _, c := range pod.Spec.InitContainers {
		w.inits = append(w.inits, mk(c, true))
	}
	for _, c := range pod.Spec.Containers {
		w.mains = append(w.mains, mk(c, false))
	}
	w.adopt()
	if isTerminalPhase(pod.Status.Phase) {
		// Finished before this kubelet saw it (a kubelet restart): its status stays as is.
		w.finished, w.frozen = true, true
		w.markWritten(pod.Status)
	}
	return w
}

// defaultWaitReason: a container the runtime does not know yet waits with
// PodInitializing when the pod has init containers, else ContainerCreating
// (kubelet_pods.go convertToAPIContainerStatuses defaultWaitingState).
func defaultWaitReason(pod *v1.Pod) string {
	if len(pod.Spec.InitContainers) > 0 {
		return reasonPodInitializing
	}
	return reasonContainerCreating
}

func (w *podWorker) parseFaults() {
	f, warnings := parseFaults(w.pod.Annotations)
	for _, msg := range warnings {
		klog.Warningf("pod %s/%s: %s", w.pod.Namespace, w.pod.Name, msg)
		w.env.events.emit(podRef(w.pod), v1.EventTypeWarning, eventFailedValidation, msg)
	}
	w.faults = f
}

// adopt takes over what a previous run of this kubelet reported (a kubelet restart keeps
// containers running: the runtime still has them).
func (w *podWorker) adopt() {
	st := w.pod.Status
	if st.StartTime != nil {
		w.startTime = st.StartTime.Time
	}
	adopt := func(list []*simContainer, statuses []v1.ContainerStatus) bool {
		found := false
		for _, c := range list {
			s, ok := findStatus(statuses, c.spec.Name)
			if !ok || (s.State.Running == nil && s.State.Terminated == nil && s.LastTerminationState.Terminated == nil) {
				continue
			}
			found = true
			c.everStarted = true
			c.rec.RestartCount, c.rec.ImageID, c.rec.ContainerID = s.RestartCount, s.ImageID, s.ContainerID
			c.rec.LastTerm = s.LastTerminationState.Terminated
			switch {
			case s.State.Running != nil:
				c.rec.State, c.rec.StartedAt = stateRunning, s.State.Running.StartedAt.Time
				c.rec.Started = s.Started != nil && *s.Started
				c.rec.Ready = s.Ready
			case s.State.Terminated != nil:
				c.rec.State, c.rec.Term = stateTerminated, s.State.Terminated
				c.rec.Ready = s.Ready
				c.exitedAt = s.State.Terminated.FinishedAt.Time
				c.exits = int(s.RestartCount) + 1
			default:
				c.rec.WaitReason, c.rec.WaitMessage = s.State.Waiting.Reason, s.State.Waiting.Message
				c.exits = int(s.RestartCount) + 1
			}
			if c.rec.ContainerID == "" && c.rec.LastTerm != nil {
				c.rec.ContainerID = c.rec.LastTerm.ContainerID
			}
			// The log files are still on disk: instance k wrote <k>.log; the last
			// terminated one is the current count while waiting, the one before otherwise.
			logPath := func(n int32) string {
				return containerLogPath(w.env.logDir, w.pod.Namespace, w.pod.Name, w.pod.UID, c.spec.Name, max(n, 0))
			}
			if s.State.Waiting == nil && s.ContainerID != "" {
				c.paths[s.ContainerID] = logPath(s.RestartCount)
			}
			if last := s.LastTerminationState.Terminated; last != nil && last.ContainerID != "" {
				if s.State.Waiting != nil {
					c.paths[last.ContainerID] = logPath(s.RestartCount)
				} else {
					c.paths[last.ContainerID] = logPath(s.RestartCount - 1)
				}
			}
		}
		return found
	}
	a := adopt(w.inits, st.InitContainerStatuses)
	b := adopt(w.mains, st.ContainerStatuses)
	if a || b {
		w.volumesOK = true
		if st.PodIP != "" {
			w.podIP = st.PodIP
		}
	}
}

// setPod takes a newer version of the pod (annotations may have changed).
func (w *podWorker) setPod(pod *v1.Pod) {
	if pod.Annotations[annotationFault] != w.pod.Annotations[annotationFault] ||
		pod.Annotations[annotationRunSeconds] != w.pod.Annotations[annotationRunSeconds] ||
		pod.Annotations[annotationBackoffSeconds] != w.pod.Annotations[annotationBackoffSeconds] ||
		pod.Annotations[annotationLog] != w.pod.Annotations[annotationLog] {
		w.pod = pod
		w.parseFaults()
		for _, c := range w.inits {
			c.plan = w.faults.initContainerPlan(c.sidecar)
		}
		for _, c := range w.mains {
			c.plan = w.faults.mainContainerPlan(pod.Spec.RestartPolicy)
		}
		return
	}
	w.pod = pod
}

// podDesc is format.Pod: name_namespace(uid).
func podDesc(pod *v1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}

func (c *simContainer) ref(pod *v1.Pod) *v1.ObjectReference {
	return containerRef(pod, c.spec.Name, c.init)
}

func (c *simContainer) setWaiting(reason, message string) {
	if c.rec.State == stateTerminated && c.rec.Term != nil {
		c.rec.LastTerm, c.rec.Term = c.rec.Term, nil
	}
	c.rec.State, c.rec.WaitReason, c.rec.WaitMessage = stateWaiting, reason, message
	c.rec.Ready, c.rec.Started = false, false
}

// step moves the pod on to now and returns its status.
func (w *podWorker) step(now time.Time) v1.PodStatus {
	if w.frozen {
		w.updateSnapshot(w.last)
		return w.last
	}
	if w.startTime.IsZero() {
		w.startTime = now
	}
	if !w.finished && !w.killed && !isTerminalPhase(w.pod.Status.Phase) {
		w.progress(now)
	}
	st := w.status(now)
	if isTerminalPhase(st.Phase) && !w.finished {
		// The pod is done: its sandbox (and IP) go away (kubelet.go syncTerminatedPod).
		w.finished = true
		w.env.releaseIP(w.pod.UID)
	}
	w.updateSnapshot(st)
	return st
}

func (w *podWorker) progress(now time.Time) {
	if !w.volumesOK {
		if now.Before(w.nextVolumeCheck) {
			return
		}
		w.nextVolumeCheck = now.Add(recheckPeriod)
		if msg := volumeSetUpError(w.pod, w.env.objects()); msg != "" {
			w.env.events.emitRepeating(podRef(w.pod), v1.EventTypeWarning, eventFailedMount, msg, now)
			return
		}
		w.volumesOK = true
	}
	if w.podIP == "" {
		ip, err := w.env.allocIP(w.pod)
		if err != nil {
			if err.Error() != w.ipErr {
				klog.Errorf("pod %s/%s: pod IP: %v", w.pod.Namespace, w.pod.Name, err)
				w.ipErr = err.Error()
			}
			return
		}
		w.podIP = ip
	}

	initsDone := true
	for _, c := range w.inits {
		if c.sidecar {
			w.drive(c, now)
			if c.rec.State == stateRunning && c.rec.Started {
				continue
			}
			initsDone = false
			break
		}
		if c.rec.State == stateTerminated && c.rec.Term != nil && c.rec.Term.ExitCode == 0 {
			continue
		}
		w.drive(c, now)
		if c.rec.State == stateTerminated && c.rec.Term != nil && c.rec.Term.ExitCode == 0 {
			continue
		}
		initsDone = false
		break
	}
	if !initsDone {
		return // regular containers keep waiting with PodInitializing
	}
	for _, c := range w.mains {
		w.drive(c, now)
	}
}

// restartable: will this exited container be started again?
func (w *podWorker) restartable(c *simContainer, exitCode int32) bool {
	if c.init && !c.sidecar && exitCode == 0 {
		return false
	}
	return containerShouldRestart(&c.spec, &w.pod.Spec, exitCode)
}

func (w *podWorker) drive(c *simContainer, now time.Time) {
	switch c.rec.State {
	case stateRunning:
		elapsed := now.Sub(c.rec.StartedAt)
		if !c.rec.Started && elapsed >= c.startedAfter {
			c.rec.Started = true
		}
		neverReady := w.faults.Kind == faultNeverReady && !c.init
		regularInit := c.init && !c.sidecar // ready only once completed
		if c.rec.Started && !c.rec.Ready && !neverReady && !regularInit && elapsed >= c.readyAfter {
			c.rec.Ready = true
		}
		if neverReady && c.rec.Started {
			msg, period := readinessFailure(&c.spec)
			if c.lastUnhealthy.IsZero() || now.Sub(c.lastUnhealthy) >= period {
				// prober/worker.go: Warning Unhealthy at each failed probe.
				w.env.events.emit(c.ref(w.pod), v1.EventTypeWarning, eventUnhealthy, msg)
				c.lastUnhealthy = now
			}
		}
		if c.plan.Exits && elapsed >= c.plan.RunFor {
			w.exit(c, now)
		}
	case stateTerminated:
		if c.rec.Term == nil || !w.restartable(c, c.rec.Term.ExitCode) {
			return // final
		}
		if now.Before(c.restartAt) {
			if c.backoff > 0 && now.Sub(c.exitedAt) >= terminatedShown {
				w.crashLoopBackOff(c, now)
			}
			return
		}
		w.tryStart(c, now)
	default:
		if c.restartPending && now.Before(c.restartAt) {
			w.crashLoopBackOff(c, now)
			return
		}
		w.tryStart(c, now)
	}
}

// crashLoopBackOff: kuberuntime_manager.go doBackOff wording and event.
func (w *podWorker) crashLoopBackOff(c *simContainer, now time.Time) {
	c.setWaiting(reasonCrashLoopBackOff,
		fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", c.backoff, c.spec.Name, podDesc(w.pod)))
	w.env.events.emitRepeating(c.ref(w.pod), v1.EventTypeWarning, eventBackOff,
		fmt.Sprintf("Back-off restarting failed container %s in pod %s", c.spec.Name, podDesc(w.pod)), now)
}

func (w *podWorker) exit(c *simContainer, now time.Time) {
	code := c.plan.ExitCode
	c.rec.Term = &v1.ContainerStateTerminated{
		ExitCode: code, Reason: terminatedReason(code), ContainerID: c.rec.ContainerID,
		StartedAt: metav1.NewTime(c.rec.StartedAt), FinishedAt: metav1.NewTime(now),
	}
	c.rec.State, c.rec.Ready, c.rec.Started = stateTerminated, false, false
	c.exitedAt = now
	if c.init && !c.sidecar && code == 0 {
		c.rec.Ready = true // a completed init container is ready (prober_manager.go UpdatePodStatus)
		return
	}
	if w.restartable(c, code) {
		c.exits++
		c.backoff = crashBackoff(c.exits, w.faults.InitialBackoff)
		c.restartAt = now.Add(max(c.backoff, terminatedShown))
		c.restartPending = true
	}
}

func (w *podWorker) tryStart(c *simContainer, now time.Time) {
	if now.Before(c.nextCheck) {
		return
	}
	if !w.ensureImage(c, now) {
		return
	}
	if msg := containerConfigError(w.pod, &c.spec, w.env.objects()); msg != "" {
		c.setWaiting(reasonCreateContainerConfigError, msg)
		w.env.events.emitRepeating(c.ref(w.pod), v1.EventTypeWarning, eventFailed, "Error: "+msg, now)
		c.nextCheck = now.Add(recheckPeriod)
		return
	}
	w.start(c, now)
}

// ensureImage follows images/image_manager.go EnsureImageExists and its events; it
// returns true when the image is there.
func (w *podWorker) ensureImage(c *simContainer, now time.Time) bool {
	if c.imageOK {
		return true
	}
	requested := c.spec.Image
	ref := c.ref(w.pod)
	ev := w.env.events
	if c.pull != nil {
		select {
		case r := <-c.pull:
			c.pull = nil
			if r.err != nil {
				msg := r.err.Error()
				ev.emit(ref, v1.EventTypeWarning, eventFailed, fmt.Sprintf("Failed to pull image %q: %v", requested, msg))
				ev.emit(ref, v1.EventTypeWarning, eventFailed, "Error: "+reasonErrImagePull)
				c.pullFailures++
				c.pullFailedAt = now
				c.pullRetryAt = now.Add(pullBackoff(c.pullFailures))
				c.lastPullErr = reasonErrImagePull + ": " + msg
				c.setWaiting(reasonErrImagePull, msg)
				return false
			}
			took := r.took.Truncate(time.Millisecond)
			ev.emit(ref, v1.EventTypeNormal, eventPulled, fmt.Sprintf(
				"Successfully pulled image %q in %v (%v including waiting). Image size: %v bytes.", requested, took, took, r.size))
			c.pullFailures, c.pullRetryAt, c.lastPullErr = 0, time.Time{}, ""
			c.imageOK, c.imageID = true, r.imageID
			return true
		default:
			return false
		}
	}
	if !c.pullRetryAt.IsZero() && now.Before(c.pullRetryAt) {
		if now.Sub(c.pullFailedAt) >= pullBackOffShow {
			msg := fmt.Sprintf("Back-off pulling image %q", requested)
			c.setWaiting(reasonImagePullBackOff, msg+": "+c.lastPullErr)
			ev.emitRepeating(ref, v1.EventTypeNormal, eventBackOff, msg, now)
			ev.emitRepeating(ref, v1.EventTypeWarning, eventFailed, "Error: "+reasonImagePullBackOff, now)
		}
		return false
	}
	if now.Before(c.nextCheck) {
		return false
	}
	image, err := applyDefaultImageTag(requested)
	if err != nil {
		msg := fmt.Sprintf("Failed to apply default image tag %q: %v", requested, err)
		ev.emitRepeating(ref, v1.EventTypeWarning, eventInspectFailed, msg, now)
		ev.emitRepeating(ref, v1.EventTypeWarning, eventFailed, "Error: "+reasonInvalidImageName, now)
		c.setWaiting(reasonInvalidImageName, msg)
		c.nextCheck = now.Add(recheckPeriod)
		return false
	}
	policy := effectivePullPolicy(&c.spec)
	if policy != v1.PullAlways {
		img, err := w.env.images.ImageStatus(w.ctx, image)
		if err != nil {
			msg := fmt.Sprintf("Failed to inspect image %q: %v", "", err)
			ev.emitRepeating(ref, v1.EventTypeWarning, eventInspectFailed, msg, now)
			c.setWaiting(reasonImageInspectError, msg)
			c.nextCheck = now.Add(recheckPeriod)
			return false
		}
		if img != nil {
			ev.emit(ref, v1.EventTypeNormal, eventPulled, fmt.Sprintf(
				"Container image %q already present on machine and can be accessed by the pod", requested))
			c.imageOK, c.imageID = true, imageRefOf(img)
			c.pullFailures, c.pullRetryAt, c.lastPullErr = 0, time.Time{}, ""
			return true
		}
		if policy == v1.PullNever {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", requested)
			ev.emitRepeating(ref, v1.EventTypeWarning, eventErrImageNeverPull, msg, now)
			ev.emitRepeating(ref, v1.EventTypeWarning, eventFailed, "Error: "+reasonErrImageNeverPull, now)
			c.setWaiting(reasonErrImageNeverPull, msg)
			c.nextCheck = now.Add(recheckPeriod)
			return false
		}
	}
	ev.emit(ref, v1.EventTypeNormal, eventPulling, fmt.Sprintf("Pulling image %q", requested))
	ch := make(chan pullResult, 1)
	c.pull = ch
	images, ctx := w.env.images, w.ctx
	go func() {
		t0 := time.Now()
		_, err := images.PullImage(ctx, image)
		r := pullResult{took: time.Since(t0), err: err}
		if err == nil {
			if img, serr := images.ImageStatus(ctx, image); serr == nil && img != nil {
				r.imageID, r.size = imageRefOf(img), img.GetSize()
			}
		}
		ch <- r
	}()
	return false
}

func (w *podWorker) start(c *simContainer, now time.Time) {
	if c.rec.State == stateTerminated && c.rec.Term != nil {
		c.rec.LastTerm, c.rec.Term = c.rec.Term, nil
	}
	if c.everStarted {
		c.rec.RestartCount++
	}
	id := newContainerID()
	c.rec.ContainerID, c.rec.ImageID, c.rec.StartedAt = id, c.imageID, now
	c.rec.State, c.rec.WaitReason, c.rec.WaitMessage = stateRunning, "", ""
	c.rec.Started = c.startedAfter == 0
	c.rec.Ready = c.rec.Started && c.readyAfter == 0 && !(w.faults.Kind == faultNeverReady && !c.init) && !(c.init && !c.sidecar)
	c.everStarted, c.restartPending, c.imageOK = true, false, false
	ref := c.ref(w.pod)
	// kuberuntime_container.go startContainer (v1.36 wording).
	w.env.events.emit(ref, v1.EventTypeNormal, eventCreated, "Container created")
	w.env.events.emit(ref, v1.EventTypeNormal, eventStarted, "Container started")

	path := containerLogPath(w.env.logDir, w.pod.Namespace, w.pod.Name, w.pod.UID, c.spec.Name, c.rec.RestartCount)
	lines := w.faults.LogLines
	if lines == nil {
		lines = defaultLogLines(w.pod.Name, w.pod.Namespace, c.spec.Name, c.spec.Image, now)
	}
	if err := writeLogLines(path, now, lines); err != nil {
		klog.Warningf("pod %s/%s: container %s log: %v", w.pod.Namespace, w.pod.Name, c.spec.Name, err)
	}
	c.paths[id] = path
	if c.plan.Exits && c.plan.RunFor == 0 {
		w.exit(c, now)
	}
}

// kill stops the pod's containers for its deletion (kuberuntime_container.go killContainer:
// event Killing "Stopping container C"); a container stopped in its grace period exits 0.
func (w *podWorker) kill(now time.Time) v1.PodStatus {
	if w.frozen {
		w.killed = true
		return w.last
	}
	if !w.killed {
		w.killed = true
		initialized := true
		for _, c := range w.inits {
			if !c.sidecar && !(c.rec.State == stateTerminated && c.rec.Term != nil && c.rec.Term.ExitCode == 0) {
				initialized = false
			}
		}
		for _, c := range append(append([]*simContainer{}, w.inits...), w.mains...) {
			if c.pull != nil {
				c.pull = nil // its result is dropped
			}
			switch c.rec.State {
			case stateRunning:
				w.env.events.emit(c.ref(w.pod), v1.EventTypeNormal, eventKilling, "Stopping container "+c.spec.Name)
				c.rec.Term = &v1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", ContainerID: c.rec.ContainerID,
					StartedAt: metav1.NewTime(c.rec.StartedAt), FinishedAt: metav1.NewTime(now)}
				c.rec.State, c.rec.Ready, c.rec.Started = stateTerminated, false, false
			case stateWaiting:
				// status_manager.go TerminatePod: containers that are not terminated
				if (c.init && c.everStarted) || (!c.init && initialized) {
					c.rec.Term = &v1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown",
						Message: "The container could not be located when the pod was terminated"}
					c.rec.State = stateTerminated
				}
			}
		}
	}
	st := w.status(now)
	w.updateSnapshot(st)
	return st
}

func (w *podWorker) records(list []*simContainer) []containerRecord {
	out := make([]containerRecord, 0, len(list))
	for _, c := range list {
		out = append(out, c.rec)
	}
	return out
}

func (w *podWorker) status(now time.Time) v1.PodStatus {
	old := w.pod.Status
	if w.written {
		old = w.last
	}
	return buildPodStatus(w.pod, statusInput{
		Init:           w.records(w.inits),
		Main:           w.records(w.mains),
		ReadyToStart:   w.volumesOK && w.podIP != "",
		PodIsTerminal:  w.killed,
		HostIP:         w.env.hostIP,
		PodIP:          w.podIP,
		StartTime:      w.startTime,
		Now:            now,
		OldStatus:      old,
		APIPhase:       w.pod.Status.Phase,
		ExtraCondition: otherConditions(w.pod.Status),
	})
}

// changed: does st differ from what was written last?
func (w *podWorker) changed(st v1.PodStatus) bool {
	return !w.written || !apiequality.Semantic.DeepEqual(w.last, st)
}

func (w *podWorker) markWritten(st v1.PodStatus) {
	w.last, w.written = st, true
}

func (w *podWorker) updateSnapshot(st v1.PodStatus) {
	t := logTarget{PodName: w.pod.Name, Status: st, Paths: map[string]string{}}
	for _, c := range append(append([]*simContainer{}, w.inits...), w.mains...) {
		t.Containers = append(t.Containers, c.spec.Name)
		for id, p := range c.paths {
			t.Paths[id] = p
		}
	}
	w.mu.Lock()
	w.snapshot = t
	w.mu.Unlock()
}

func (w *podWorker) logTarget() logTarget {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snapshot
}

// describe is a one-line summary for the kubelet's own log.
func describe(st v1.PodStatus) string {
	var parts []string
	for _, s := range append(append([]v1.ContainerStatus{}, st.InitContainerStatuses...), st.ContainerStatuses...) {
		state := "?"
		switch {
		case s.State.Running != nil:
			state = "running"
			if s.Ready {
				state += ",ready"
			}
		case s.State.Terminated != nil:
			state = fmt.Sprintf("terminated:%s(%d)", s.State.Terminated.Reason, s.State.Terminated.ExitCode)
		case s.State.Waiting != nil:
			state = "waiting:" + s.State.Waiting.Reason
		}
		parts = append(parts, fmt.Sprintf("%s=%s/r%d", s.Name, state, s.RestartCount))
	}
	return fmt.Sprintf("%s ip=%s [%s]", st.Phase, st.PodIP, strings.Join(parts, " "))
}
