package main

// Pure pod status computation: what the kubelet's generateAPIPodStatus (kubelet_pods.go),
// status/generate.go and the status manager (status/status_manager.go) compute, reduced to
// the simulated containers. No API calls here: status_test.go covers it.

import (
	"fmt"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type containerState int

const (
	stateWaiting containerState = iota
	stateRunning
	stateTerminated
)

// containerRecord is one container as the runtime would report it (the latest instance).
type containerRecord struct {
	Name         string
	Image        string // the spec image (containerd 2 reports the user-specified image)
	ImageID      string
	ContainerID  string // of the current instance, "containerd://<64 hex>", "" if none
	State        containerState
	WaitReason   string
	WaitMessage  string
	StartedAt    time.Time
	Term         *v1.ContainerStateTerminated // State == stateTerminated
	LastTerm     *v1.ContainerStateTerminated
	RestartCount int32
	Ready        bool
	Started      bool
}

// apiStatus converts a record (kubelet_pods.go convertToAPIContainerStatuses).
func (c *containerRecord) apiStatus() v1.ContainerStatus {
	s := v1.ContainerStatus{
		Name:         c.Name,
		Image:        c.Image,
		ImageID:      c.ImageID,
		ContainerID:  c.ContainerID,
		RestartCount: c.RestartCount,
		Ready:        c.Ready,
	}
	started := c.Started && c.State == stateRunning
	s.Started = &started
	switch c.State {
	case stateRunning:
		s.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt)}
	case stateTerminated:
		if c.Term != nil {
			t := *c.Term
			s.State.Terminated = &t
		}
	default:
		reason := c.WaitReason
		if reason == "" {
			reason = "ContainerCreating"
		}
		s.State.Waiting = &v1.ContainerStateWaiting{Reason: reason, Message: c.WaitMessage}
	}
	if c.LastTerm != nil {
		t := *c.LastTerm
		s.LastTerminationState.Terminated = &t
	}
	return s
}

func metaTime(t time.Time) metav1.Time { return metav1.NewTime(t) }

func isSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

func isTerminalPhase(p v1.PodPhase) bool {
	return p == v1.PodSucceeded || p == v1.PodFailed
}

// computeQOS follows pkg/apis/core/v1/helper/qos ComputePodQOS: BestEffort without any cpu
// or memory request/limit, Guaranteed when every container has cpu and memory limits and
// the summed requests equal the summed limits, else Burstable. Pod-level resources win
// when set (PodLevelResources).
func computeQOS(pod *v1.Pod) v1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	supported := func(name v1.ResourceName) bool { return name == v1.ResourceCPU || name == v1.ResourceMemory }
	requests, limits := v1.ResourceList{}, v1.ResourceList{}
	add := func(into v1.ResourceList, list v1.ResourceList) (found map[v1.ResourceName]bool) {
		found = map[v1.ResourceName]bool{}
		for name, q := range list {
			if !supported(name) || q.Sign() != 1 {
				continue
			}
			found[name] = true
			sum := q.DeepCopy()
			if prev, ok := into[name]; ok {
				sum.Add(prev)
			}
			into[name] = sum
		}
		return found
	}
	guaranteed := true
	if r := pod.Spec.Resources; r != nil && (len(r.Requests) > 0 || len(r.Limits) > 0) {
		add(requests, r.Requests)
		if len(r.Limits) > 0 {
			found := add(limits, r.Limits)
			if !found[v1.ResourceCPU] || !found[v1.ResourceMemory] {
				guaranteed = false
			}
		}
	} else {
		all := append(append([]v1.Container{}, pod.Spec.Containers...), pod.Spec.InitContainers...)
		for _, c := range all {
			add(requests, c.Resources.Requests)
			found := add(limits, c.Resources.Limits)
			if !found[v1.ResourceCPU] || !found[v1.ResourceMemory] {
				guaranteed = false
			}
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return v1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
				break
			}
		}
	}
	if guaranteed && len(requests) == len(limits) {
		return v1.PodQOSGuaranteed
	}
	return v1.PodQOSBurstable
}

// containerShouldRestart follows pkg/api/v1/pod/util.go ContainerShouldRestart
// (ContainerRestartRules, on by default since 1.35): container rules, then the container's
// restartPolicy, then the pod's.
func containerShouldRestart(c *v1.Container, spec *v1.PodSpec, exitCode int32) bool {
	if c.RestartPolicy != nil {
		for _, rule := range c.RestartPolicyRules {
			if rule.Action != v1.ContainerRestartRuleActionRestart || rule.ExitCodes == nil {
				continue
			}
			in := false
			for _, v := range rule.ExitCodes.Values {
				if v == exitCode {
					in = true
				}
			}
			if (rule.ExitCodes.Operator == v1.ContainerRestartRuleOnExitCodesOpIn) == in {
				return true
			}
		}
		switch *c.RestartPolicy {
		case v1.ContainerRestartPolicyAlways:
			return true
		case v1.ContainerRestartPolicyOnFailure:
			return exitCode != 0
		case v1.ContainerRestartPolicyNever:
			return false
		}
	}
	switch spec.RestartPolicy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

func findStatus(statuses []v1.ContainerStatus, name string) (*v1.ContainerStatus, bool) {
	for i := range statuses {
		if statuses[i].Name == name {
			return &statuses[i], true
		}
	}
	return nil, false
}

// getPhase follows kubelet_pods.go getPhase with ContainerRestartRules enabled (the
// default) and RestartAllContainersOnContainerExits disabled (alpha). info holds the
// init and regular container statuses.
func getPhase(pod *v1.Pod, info []v1.ContainerStatus, podIsTerminal, podHasInitialized bool) v1.PodPhase {
	spec := &pod.Spec
	pendingRestartableInit, pendingRegularInit := 0, 0
	failedInitNotRestartable := 0
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if isSidecar(c) {
			continue
		}
		s, ok := findStatus(info, c.Name)
		switch {
		case !ok:
			pendingRegularInit++
		case s.State.Running != nil:
			pendingRegularInit++
		case s.State.Terminated != nil:
			if code := s.State.Terminated.ExitCode; code != 0 && !containerShouldRestart(c, spec, code) {
				failedInitNotRestartable++
			}
		case s.State.Waiting != nil:
			if s.LastTerminationState.Terminated != nil {
				if code := s.LastTerminationState.Terminated.ExitCode; code != 0 && !containerShouldRestart(c, spec, code) {
					failedInitNotRestartable++
				}
			} else {
				pendingRegularInit++
			}
		default:
			pendingRegularInit++
		}
	}

	unknown, running, waiting, stopped, stoppedNotRestartable, succeeded := 0, 0, 0, 0, 0, 0
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if !isSidecar(c) {
			continue
		}
		s, ok := findStatus(info, c.Name)
		switch {
		case !ok:
			unknown++
		case s.State.Running != nil:
			if s.Started == nil || !*s.Started {
				pendingRestartableInit++
			}
			running++
		case s.State.Terminated != nil:
		case s.State.Waiting != nil:
			if s.LastTerminationState.Terminated == nil {
				pendingRestartableInit++
				waiting++
			}
		default:
			pendingRestartableInit++
			unknown++
		}
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		s, ok := findStatus(info, c.Name)
		switch {
		case !ok:
			unknown++
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			stopped++
			code := s.State.Terminated.ExitCode
			if !containerShouldRestart(c, spec, code) {
				stoppedNotRestartable++
			}
			if code == 0 {
				succeeded++
			}
		case s.State.Waiting != nil:
			if s.LastTerminationState.Terminated != nil {
				stopped++
				if !containerShouldRestart(c, spec, s.LastTerminationState.Terminated.ExitCode) {
					stoppedNotRestartable++
				}
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}

	if failedInitNotRestartable > 0 {
		return v1.PodFailed
	}
	switch {
	case pendingRegularInit > 0 || (pendingRestartableInit > 0 && !podHasInitialized):
		return v1.PodPending
	case waiting > 0:
		return v1.PodPending
	case running > 0 && unknown == 0:
		return v1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if podIsTerminal {
			if stopped == succeeded {
				return v1.PodSucceeded
			}
			return v1.PodFailed
		}
		if stopped != stoppedNotRestartable {
			return v1.PodRunning // at least one container is restarting
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		return v1.PodFailed
	default:
		return v1.PodPending
	}
}

// Pod condition reasons (status/generate.go).
const (
	reasonPodCompleted             = "PodCompleted"
	reasonPodFailed                = "PodFailed"
	reasonContainersNotReady       = "ContainersNotReady"
	reasonContainersNotInitialized = "ContainersNotInitialized"
	reasonReadinessGatesNotReady   = "ReadinessGatesNotReady"
)

// kubeletOwnedCondition: the conditions the kubelet generates and owns
// (pkg/kubelet/types/pod_status.go PodConditionByKubelet).
func kubeletOwnedCondition(t v1.PodConditionType) bool {
	switch t {
	case v1.PodScheduled, v1.PodReady, v1.PodInitialized, v1.ContainersReady, v1.PodReadyToStartContainers:
		return true
	}
	return false
}

func hasAnyRegularContainerStarted(spec *v1.PodSpec, statuses []v1.ContainerStatus) bool {
	for i := range spec.Containers {
		if s, ok := findStatus(statuses, spec.Containers[i].Name); ok {
			if s.State.Running != nil || s.State.Terminated != nil || s.LastTerminationState.Terminated != nil {
				return true
			}
		}
	}
	return false
}

func containersReadyCondition(pod *v1.Pod, all []v1.ContainerStatus, phase v1.PodPhase) v1.PodCondition {
	cond := v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionFalse, ObservedGeneration: pod.Generation}
	var unknown, unready []string
	check := func(c *v1.Container) {
		if s, ok := findStatus(all, c.Name); !ok {
			unknown = append(unknown, c.Name)
		} else if !s.Ready {
			unready = append(unready, c.Name)
		}
	}
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			check(&pod.Spec.InitContainers[i])
		}
	}
	for i := range pod.Spec.Containers {
		check(&pod.Spec.Containers[i])
	}
	if phase == v1.PodSucceeded && len(unknown) == 0 {
		cond.Reason = reasonPodCompleted
		return cond
	}
	if phase == v1.PodFailed {
		cond.Reason = reasonPodFailed
		return cond
	}
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unknown status: %s", unknown))
	}
	if len(unready) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unready status: %s", unready))
	}
	if len(msgs) > 0 {
		cond.Reason = reasonContainersNotReady
		cond.Message = joinComma(msgs)
		return cond
	}
	cond.Status = v1.ConditionTrue
	return cond
}

func podReadyCondition(pod *v1.Pod, conditions []v1.PodCondition, all []v1.ContainerStatus, phase v1.PodPhase) v1.PodCondition {
	cr := containersReadyCondition(pod, all, phase)
	if cr.Status != v1.ConditionTrue {
		return v1.PodCondition{Type: v1.PodReady, Status: cr.Status, Reason: cr.Reason, Message: cr.Message, ObservedGeneration: pod.Generation}
	}
	var msgs []string
	for _, rg := range pod.Spec.ReadinessGates {
		var found *v1.PodCondition
		for i := range conditions {
			if conditions[i].Type == rg.ConditionType {
				found = &conditions[i]
			}
		}
		if found == nil {
			msgs = append(msgs, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", string(rg.ConditionType)))
		} else if found.Status != v1.ConditionTrue {
			msgs = append(msgs, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", string(rg.ConditionType), found.Status))
		}
	}
	if len(msgs) > 0 {
		return v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionFalse, Reason: reasonReadinessGatesNotReady, Message: joinComma(msgs), ObservedGeneration: pod.Generation}
	}
	return v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionTrue, ObservedGeneration: pod.Generation}
}

func initializedCondition(pod *v1.Pod, all []v1.ContainerStatus, phase v1.PodPhase) v1.PodCondition {
	cond := v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionTrue, ObservedGeneration: pod.Generation}
	var unknown, incomplete []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		s, ok := findStatus(all, c.Name)
		if !ok {
			unknown = append(unknown, c.Name)
			continue
		}
		if isSidecar(c) {
			if s.Started == nil || !*s.Started {
				incomplete = append(incomplete, c.Name)
			}
		} else if !s.Ready { // a completed init container is reported ready
			incomplete = append(incomplete, c.Name)
		}
	}
	if phase == v1.PodSucceeded && len(unknown) == 0 {
		cond.Reason = reasonPodCompleted
		return cond
	}
	if hasAnyRegularContainerStarted(&pod.Spec, all) {
		return cond
	}
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unknown status: %s", unknown))
	}
	if len(incomplete) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with incomplete status: %s", incomplete))
	}
	if len(msgs) > 0 {
		cond.Status, cond.Reason, cond.Message = v1.ConditionFalse, reasonContainersNotInitialized, joinComma(msgs)
	}
	return cond
}

func joinComma(parts []string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += ", "
		}
		out += p
	}
	return out
}

// statusInput is what the pod worker knows besides the container records.
type statusInput struct {
	Init, Main     []containerRecord
	ReadyToStart   bool // sandbox created (volumes mounted, IP assigned)
	PodIsTerminal  bool // the pod was killed (deletion) or finished
	HostIP, PodIP  string
	StartTime      time.Time
	Now            time.Time
	OldStatus      v1.PodStatus // what this kubelet wrote last (else the API's)
	APIPhase       v1.PodPhase  // the phase the API server holds now
	ExtraCondition []v1.PodCondition
}

// buildPodStatus assembles a v1.PodStatus (kubelet_pods.go generateAPIPodStatus) and keeps
// lastTransitionTime of unchanged conditions (status_manager.go updateLastTransitionTime).
func buildPodStatus(pod *v1.Pod, in statusInput) v1.PodStatus {
	s := v1.PodStatus{
		QOSClass:           computeQOS(pod),
		ObservedGeneration: pod.Generation,
	}
	for i := range in.Init {
		s.InitContainerStatuses = append(s.InitContainerStatuses, in.Init[i].apiStatus())
	}
	for i := range in.Main {
		s.ContainerStatuses = append(s.ContainerStatuses, in.Main[i].apiStatus())
	}
	// Regular container statuses are sorted by name (kubetypes.SortedContainerStatuses).
	sort.SliceStable(s.ContainerStatuses, func(i, j int) bool { return s.ContainerStatuses[i].Name < s.ContainerStatuses[j].Name })

	all := append(append([]v1.ContainerStatus{}, s.ContainerStatuses...), s.InitContainerStatuses...)
	s.Phase = getPhase(pod, all, in.PodIsTerminal, hasAnyRegularContainerStarted(&pod.Spec, all))
	// Terminal phases never revert (generateAPIPodStatus, status manager).
	if !isTerminalPhase(s.Phase) {
		if isTerminalPhase(in.OldStatus.Phase) {
			s.Phase = in.OldStatus.Phase
		} else if isTerminalPhase(in.APIPhase) {
			s.Phase = in.APIPhase
		}
	}
	if isTerminalPhase(in.APIPhase) {
		s.Phase = in.APIPhase
	}
	// A terminated pod that did not end Succeeded or Failed by itself is Failed
	// (status_manager.go TerminatePod).
	if in.PodIsTerminal && !isTerminalPhase(s.Phase) {
		s.Phase = v1.PodFailed
	}

	if !in.StartTime.IsZero() {
		t := metav1.NewTime(in.StartTime)
		s.StartTime = &t
	}
	if in.HostIP != "" {
		s.HostIP = in.HostIP
		s.HostIPs = []v1.HostIP{{IP: in.HostIP}}
	}
	if in.PodIP != "" {
		s.PodIP = in.PodIP
		s.PodIPs = []v1.PodIP{{IP: in.PodIP}}
	}

	conds := append([]v1.PodCondition{}, in.ExtraCondition...)
	ready := v1.PodCondition{Type: v1.PodReadyToStartContainers, Status: v1.ConditionFalse, ObservedGeneration: pod.Generation}
	if in.ReadyToStart && !in.PodIsTerminal && !isTerminalPhase(s.Phase) {
		ready.Status = v1.ConditionTrue
	}
	conds = append(conds, ready)
	allInitFirst := append(append([]v1.ContainerStatus{}, s.InitContainerStatuses...), s.ContainerStatuses...)
	conds = append(conds, initializedCondition(pod, allInitFirst, s.Phase))
	if isTerminalPhase(s.Phase) {
		reason := reasonPodCompleted
		if s.Phase == v1.PodFailed {
			reason = reasonPodFailed
		}
		conds = append(conds, v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionFalse, Reason: reason, ObservedGeneration: pod.Generation})
	} else {
		conds = append(conds, podReadyCondition(pod, conds, allInitFirst, s.Phase))
	}
	conds = append(conds, containersReadyCondition(pod, allInitFirst, s.Phase))
	conds = append(conds, v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionTrue, ObservedGeneration: pod.Generation})
	s.Conditions = keepTransitionTimes(conds, in.OldStatus.Conditions, in.Now)
	return s
}

// keepTransitionTimes sets lastTransitionTime to now for conditions whose status changed
// and keeps the old time otherwise.
func keepTransitionTimes(conds, old []v1.PodCondition, now time.Time) []v1.PodCondition {
	for i := range conds {
		conds[i].LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
		for _, o := range old {
			if o.Type == conds[i].Type && o.Status == conds[i].Status && !o.LastTransitionTime.IsZero() {
				conds[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	return conds
}

// mergeIntoAPIStatus puts the kubelet's status over the API's, keeping what others own:
// conditions not generated by the kubelet (readiness gates, DisruptionTarget), the
// scheduler's nominatedNodeName and the QoS class the API server computed
// (status_manager.go mergePodStatus).
func mergeIntoAPIStatus(kubelet v1.PodStatus, api v1.PodStatus) v1.PodStatus {
	out := *kubelet.DeepCopy()
	var others []v1.PodCondition
	for _, c := range api.Conditions {
		if !kubeletOwnedCondition(c.Type) {
			others = append(others, c)
		}
	}
	if len(others) > 0 {
		var mine []v1.PodCondition
		for _, c := range out.Conditions {
			if kubeletOwnedCondition(c.Type) {
				mine = append(mine, c)
			}
		}
		out.Conditions = append(others, mine...)
	}
	out.NominatedNodeName = api.NominatedNodeName
	if api.QOSClass != "" {
		out.QOSClass = api.QOSClass
	}
	out.ResourceClaimStatuses = api.ResourceClaimStatuses
	return out
}

// otherConditions are the API pod's conditions the kubelet does not own; they come first
// (generateAPIPodStatus) and feed readiness gates.
func otherConditions(api v1.PodStatus) []v1.PodCondition {
	var out []v1.PodCondition
	for _, c := range api.Conditions {
		if !kubeletOwnedCondition(c.Type) {
			out = append(out, c)
		}
	}
	return out
}
