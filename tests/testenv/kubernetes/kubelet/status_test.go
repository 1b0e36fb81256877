package main

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func resources(req, lim map[v1.ResourceName]string) v1.ResourceRequirements {
	r := v1.ResourceRequirements{}
	if req != nil {
		r.Requests = v1.ResourceList{}
		for k, v := range req {
			r.Requests[k] = resource.MustParse(v)
		}
	}
	if lim != nil {
		r.Limits = v1.ResourceList{}
		for k, v := range lim {
			r.Limits[k] = resource.MustParse(v)
		}
	}
	return r
}

func TestComputeQOS(t *testing.T) {
	cpuMem := func(c, m string) map[v1.ResourceName]string {
		return map[v1.ResourceName]string{v1.ResourceCPU: c, v1.ResourceMemory: m}
	}
	cases := []struct {
		name       string
		containers []v1.ResourceRequirements
		init       []v1.ResourceRequirements
		want       v1.PodQOSClass
	}{
		{"nothing", []v1.ResourceRequirements{{}}, nil, v1.PodQOSBestEffort},
		{"limits only (requests default to them)", []v1.ResourceRequirements{resources(cpuMem("1", "1Gi"), cpuMem("1", "1Gi"))}, nil, v1.PodQOSGuaranteed},
		{"requests below limits", []v1.ResourceRequirements{resources(cpuMem("500m", "1Gi"), cpuMem("1", "1Gi"))}, nil, v1.PodQOSBurstable},
		{"only a memory request", []v1.ResourceRequirements{resources(map[v1.ResourceName]string{v1.ResourceMemory: "64Mi"}, nil)}, nil, v1.PodQOSBurstable},
		{"one container without limits", []v1.ResourceRequirements{resources(cpuMem("1", "1Gi"), cpuMem("1", "1Gi")), {}}, nil, v1.PodQOSBurstable},
		{"init container counts", []v1.ResourceRequirements{resources(cpuMem("1", "1Gi"), cpuMem("1", "1Gi"))}, []v1.ResourceRequirements{{}}, v1.PodQOSBurstable},
		{"other resources ignored", []v1.ResourceRequirements{resources(map[v1.ResourceName]string{v1.ResourceEphemeralStorage: "1Gi"}, nil)}, nil, v1.PodQOSBestEffort},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := &v1.Pod{}
			for _, r := range tc.containers {
				pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{Resources: r})
			}
			for _, r := range tc.init {
				pod.Spec.InitContainers = append(pod.Spec.InitContainers, v1.Container{Resources: r})
			}
			if got := computeQOS(pod); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	if got := computeQOS(&v1.Pod{Status: v1.PodStatus{QOSClass: v1.PodQOSGuaranteed}}); got != v1.PodQOSGuaranteed {
		t.Errorf("the API server's class is kept: %s", got)
	}
}

func running() v1.ContainerState {
	return v1.ContainerState{Running: &v1.ContainerStateRunning{}}
}
func waiting(reason string) v1.ContainerState {
	return v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reason}}
}
func terminated(code int32) v1.ContainerState {
	return v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: code}}
}

func TestGetPhase(t *testing.T) {
	pod := func(policy v1.RestartPolicy, inits ...string) *v1.Pod {
		p := &v1.Pod{Spec: v1.PodSpec{RestartPolicy: policy, Containers: []v1.Container{{Name: "a"}, {Name: "b"}}}}
		for _, n := range inits {
			p.Spec.InitContainers = append(p.Spec.InitContainers, v1.Container{Name: n})
		}
		return p
	}
	st := func(name string, s v1.ContainerState, last *v1.ContainerStateTerminated) v1.ContainerStatus {
		return v1.ContainerStatus{Name: name, State: s, LastTerminationState: v1.ContainerState{Terminated: last}}
	}
	cases := []struct {
		name     string
		pod      *v1.Pod
		statuses []v1.ContainerStatus
		terminal bool
		want     v1.PodPhase
	}{
		{"all waiting", pod(v1.RestartPolicyAlways), []v1.ContainerStatus{st("a", waiting("ContainerCreating"), nil), st("b", waiting("ErrImageNeverPull"), nil)}, false, v1.PodPending},
		{"one running one waiting", pod(v1.RestartPolicyAlways), []v1.ContainerStatus{st("a", running(), nil), st("b", waiting("ErrImagePull"), nil)}, false, v1.PodPending},
		{"all running", pod(v1.RestartPolicyAlways), []v1.ContainerStatus{st("a", running(), nil), st("b", running(), nil)}, false, v1.PodRunning},
		{"crash loop is running", pod(v1.RestartPolicyAlways), []v1.ContainerStatus{st("a", waiting("CrashLoopBackOff"), &v1.ContainerStateTerminated{ExitCode: 1}), st("b", running(), nil)}, false, v1.PodRunning},
		{"all crash looping is running", pod(v1.RestartPolicyAlways), []v1.ContainerStatus{st("a", waiting("CrashLoopBackOff"), &v1.ContainerStateTerminated{ExitCode: 1}), st("b", terminated(1), nil)}, false, v1.PodRunning},
		{"job succeeded", pod(v1.RestartPolicyNever), []v1.ContainerStatus{st("a", terminated(0), nil), st("b", terminated(0), nil)}, false, v1.PodSucceeded},
		{"job failed", pod(v1.RestartPolicyNever), []v1.ContainerStatus{st("a", terminated(0), nil), st("b", terminated(3), nil)}, false, v1.PodFailed},
		{"job one still running", pod(v1.RestartPolicyNever), []v1.ContainerStatus{st("a", terminated(0), nil), st("b", running(), nil)}, false, v1.PodRunning},
		{"onfailure restarting", pod(v1.RestartPolicyOnFailure), []v1.ContainerStatus{st("a", terminated(0), nil), st("b", terminated(2), nil)}, false, v1.PodRunning},
		{"onfailure all zero", pod(v1.RestartPolicyOnFailure), []v1.ContainerStatus{st("a", terminated(0), nil), st("b", terminated(0), nil)}, false, v1.PodSucceeded},
		{"always, all exited 0, restarting", pod(v1.RestartPolicyAlways), []v1.ContainerStatus{st("a", terminated(0), nil), st("b", terminated(0), nil)}, false, v1.PodRunning},
		{"deleted service, all exited 0", pod(v1.RestartPolicyAlways), []v1.ContainerStatus{st("a", terminated(0), nil), st("b", terminated(0), nil)}, true, v1.PodSucceeded},
		{"deleted service, one 137", pod(v1.RestartPolicyAlways), []v1.ContainerStatus{st("a", terminated(0), nil), st("b", terminated(137), nil)}, true, v1.PodFailed},
		{"init running", pod(v1.RestartPolicyAlways, "i"), []v1.ContainerStatus{st("i", running(), nil), st("a", waiting("PodInitializing"), nil), st("b", waiting("PodInitializing"), nil)}, false, v1.PodPending},
		{"init done", pod(v1.RestartPolicyAlways, "i"), []v1.ContainerStatus{st("i", terminated(0), nil), st("a", running(), nil), st("b", running(), nil)}, false, v1.PodRunning},
		{"init failed, never", pod(v1.RestartPolicyNever, "i"), []v1.ContainerStatus{st("i", terminated(1), nil), st("a", waiting("PodInitializing"), nil), st("b", waiting("PodInitializing"), nil)}, false, v1.PodFailed},
		{"missing status", pod(v1.RestartPolicyAlways), []v1.ContainerStatus{st("a", running(), nil)}, false, v1.PodPending},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := getPhase(tc.pod, tc.statuses, tc.terminal, false); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func condition(s v1.PodStatus, t v1.PodConditionType) *v1.PodCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

func TestBuildPodStatusConditions(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: v1.PodSpec{
		RestartPolicy: v1.RestartPolicyAlways,
		Containers:    []v1.Container{{Name: "web"}, {Name: "app"}},
	}}
	in := statusInput{
		Main: []containerRecord{
			{Name: "web", State: stateRunning, StartedAt: now, Ready: true, Started: true},
			{Name: "app", State: stateWaiting, WaitReason: "ErrImageNeverPull", WaitMessage: "m"},
		},
		ReadyToStart: true, HostIP: "172.18.0.2", PodIP: "10.244.0.2", StartTime: now, Now: now,
	}
	s := buildPodStatus(pod, in)
	if s.Phase != v1.PodPending {
		t.Errorf("phase %s", s.Phase)
	}
	if s.ContainerStatuses[0].Name != "app" {
		t.Errorf("container statuses are sorted by name: %v", s.ContainerStatuses)
	}
	var types []v1.PodConditionType
	for _, c := range s.Conditions {
		types = append(types, c.Type)
		if c.ObservedGeneration != 2 {
			t.Errorf("%s observedGeneration %d", c.Type, c.ObservedGeneration)
		}
	}
	want := []v1.PodConditionType{v1.PodReadyToStartContainers, v1.PodInitialized, v1.PodReady, v1.ContainersReady, v1.PodScheduled}
	if len(types) != len(want) {
		t.Fatalf("conditions %v", types)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Errorf("condition %d = %s, want %s", i, types[i], want[i])
		}
	}
	ready := condition(s, v1.PodReady)
	if ready.Status != v1.ConditionFalse || ready.Reason != "ContainersNotReady" || ready.Message != "containers with unready status: [app]" {
		t.Errorf("Ready %+v", ready)
	}
	if s.PodIP != "10.244.0.2" || s.PodIPs[0].IP != "10.244.0.2" || s.HostIPs[0].IP != "172.18.0.2" {
		t.Errorf("IPs %+v", s)
	}
	if s.QOSClass != v1.PodQOSBestEffort || s.ObservedGeneration != 2 {
		t.Errorf("qos %s gen %d", s.QOSClass, s.ObservedGeneration)
	}
	if w := s.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "ErrImageNeverPull" || w.Message != "m" {
		t.Errorf("waiting %+v", s.ContainerStatuses[0].State)
	}

	// Later: both ready. Transition times move only for changed conditions.
	later := now.Add(time.Minute)
	in.Main[1] = containerRecord{Name: "app", State: stateRunning, StartedAt: later, Ready: true, Started: true}
	in.Now, in.OldStatus = later, s
	s2 := buildPodStatus(pod, in)
	if s2.Phase != v1.PodRunning {
		t.Errorf("phase %s", s2.Phase)
	}
	if c := condition(s2, v1.PodReady); c.Status != v1.ConditionTrue || !c.LastTransitionTime.Time.Equal(later) {
		t.Errorf("Ready %+v", c)
	}
	if c := condition(s2, v1.PodScheduled); !c.LastTransitionTime.Time.Equal(now) {
		t.Errorf("PodScheduled transition time changed: %+v", c)
	}
}

func TestBuildPodStatusTerminal(t *testing.T) {
	now := time.Now()
	pod := &v1.Pod{Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{Name: "job"}}}}
	term := &v1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}
	s := buildPodStatus(pod, statusInput{Main: []containerRecord{{Name: "job", State: stateTerminated, Term: term}}, ReadyToStart: true, Now: now})
	if s.Phase != v1.PodSucceeded {
		t.Fatalf("phase %s", s.Phase)
	}
	if c := condition(s, v1.PodReady); c.Reason != "PodCompleted" || c.Status != v1.ConditionFalse {
		t.Errorf("Ready %+v", c)
	}
	if c := condition(s, v1.PodReadyToStartContainers); c.Status != v1.ConditionFalse {
		t.Errorf("the sandbox of a finished pod is gone: %+v", c)
	}
	// A terminal phase never reverts.
	s2 := buildPodStatus(pod, statusInput{Main: []containerRecord{{Name: "job", State: stateWaiting}}, Now: now, OldStatus: s})
	if s2.Phase != v1.PodSucceeded {
		t.Errorf("phase reverted to %s", s2.Phase)
	}
	s3 := buildPodStatus(pod, statusInput{Main: []containerRecord{{Name: "job", State: stateRunning}}, Now: now, APIPhase: v1.PodFailed})
	if s3.Phase != v1.PodFailed {
		t.Errorf("API phase Failed replaced by %s", s3.Phase)
	}
	// A killed pod that never ran is Failed (TerminatePod).
	s4 := buildPodStatus(pod, statusInput{Main: []containerRecord{{Name: "job", State: stateWaiting}}, Now: now, PodIsTerminal: true})
	if s4.Phase != v1.PodFailed {
		t.Errorf("killed pending pod: %s", s4.Phase)
	}
}

func TestInitializedCondition(t *testing.T) {
	pod := &v1.Pod{Spec: v1.PodSpec{InitContainers: []v1.Container{{Name: "i1"}, {Name: "i2"}}, Containers: []v1.Container{{Name: "c"}}}}
	s := buildPodStatus(pod, statusInput{
		Init: []containerRecord{{Name: "i1", State: stateTerminated, Ready: true, Term: &v1.ContainerStateTerminated{Reason: "Completed"}}, {Name: "i2", State: stateRunning}},
		Main: []containerRecord{{Name: "c", State: stateWaiting, WaitReason: "PodInitializing"}},
		Now:  time.Now(), ReadyToStart: true,
	})
	c := condition(s, v1.PodInitialized)
	if c.Status != v1.ConditionFalse || c.Reason != "ContainersNotInitialized" || c.Message != "containers with incomplete status: [i2]" {
		t.Errorf("Initialized %+v", c)
	}
	if s.Phase != v1.PodPending {
		t.Errorf("phase %s", s.Phase)
	}
}

func TestReadinessGates(t *testing.T) {
	pod := &v1.Pod{Spec: v1.PodSpec{ReadinessGates: []v1.PodReadinessGate{{ConditionType: "example.com/lb"}}, Containers: []v1.Container{{Name: "c"}}}}
	in := statusInput{Main: []containerRecord{{Name: "c", State: stateRunning, Ready: true, Started: true}}, Now: time.Now(), ReadyToStart: true}
	if c := condition(buildPodStatus(pod, in), v1.PodReady); c.Status != v1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" {
		t.Errorf("Ready %+v", c)
	}
	in.ExtraCondition = []v1.PodCondition{{Type: "example.com/lb", Status: v1.ConditionTrue}}
	s := buildPodStatus(pod, in)
	if c := condition(s, v1.PodReady); c.Status != v1.ConditionTrue {
		t.Errorf("Ready %+v", c)
	}
	if s.Conditions[0].Type != "example.com/lb" {
		t.Errorf("conditions owned by others come first: %v", s.Conditions)
	}
}

func TestMergeIntoAPIStatus(t *testing.T) {
	api := v1.PodStatus{
		NominatedNodeName: "n",
		QOSClass:          v1.PodQOSBurstable,
		Conditions: []v1.PodCondition{
			{Type: v1.DisruptionTarget, Status: v1.ConditionTrue},
			{Type: v1.PodScheduled, Status: v1.ConditionTrue, Reason: "old"},
		},
	}
	mine := v1.PodStatus{QOSClass: v1.PodQOSBestEffort, Conditions: []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionTrue}}}
	got := mergeIntoAPIStatus(mine, api)
	if got.NominatedNodeName != "n" || got.QOSClass != v1.PodQOSBurstable {
		t.Errorf("fields owned by others lost: %+v", got)
	}
	if len(got.Conditions) != 2 || got.Conditions[0].Type != v1.DisruptionTarget || got.Conditions[1].Reason != "" {
		t.Errorf("conditions %+v", got.Conditions)
	}
}

func TestContainerShouldRestart(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	never := v1.ContainerRestartPolicyNever
	cases := []struct {
		name   string
		c      v1.Container
		policy v1.RestartPolicy
		code   int32
		want   bool
	}{
		{"always 0", v1.Container{}, v1.RestartPolicyAlways, 0, true},
		{"never 1", v1.Container{}, v1.RestartPolicyNever, 1, false},
		{"onfailure 0", v1.Container{}, v1.RestartPolicyOnFailure, 0, false},
		{"onfailure 1", v1.Container{}, v1.RestartPolicyOnFailure, 1, true},
		{"container always wins", v1.Container{RestartPolicy: &always}, v1.RestartPolicyNever, 0, true},
		{"rule restarts 42", v1.Container{RestartPolicy: &never, RestartPolicyRules: []v1.ContainerRestartRule{{
			Action: v1.ContainerRestartRuleActionRestart, ExitCodes: &v1.ContainerRestartRuleOnExitCodes{Operator: v1.ContainerRestartRuleOnExitCodesOpIn, Values: []int32{42}}}}},
			v1.RestartPolicyNever, 42, true},
		{"rule does not match", v1.Container{RestartPolicy: &never, RestartPolicyRules: []v1.ContainerRestartRule{{
			Action: v1.ContainerRestartRuleActionRestart, ExitCodes: &v1.ContainerRestartRuleOnExitCodes{Operator: v1.ContainerRestartRuleOnExitCodesOpIn, Values: []int32{42}}}}},
			v1.RestartPolicyNever, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := containerShouldRestart(&tc.c, &v1.PodSpec{RestartPolicy: tc.policy}, tc.code); got != tc.want {
				t.Errorf("got %v", got)
			}
		})
	}
}
