package main

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

func TestParseFaults(t *testing.T) {
	cases := []struct {
		name        string
		annotations map[string]string
		kind        faultKind
		exit        int32
		runFor      time.Duration
		backoff     time.Duration
		logLines    []string
		warnings    int
	}{
		{"none", nil, faultNone, 0, time.Second, 10 * time.Second, nil, 0},
		{"crashloop", map[string]string{annotationFault: "crashloop"}, faultCrashLoop, 1, time.Second, 10 * time.Second, nil, 0},
		{"exit code", map[string]string{annotationFault: "exit=3"}, faultExit, 3, time.Second, 10 * time.Second, nil, 0},
		{"exit zero", map[string]string{annotationFault: "exit=0"}, faultExit, 0, time.Second, 10 * time.Second, nil, 0},
		{"exit out of range", map[string]string{annotationFault: "exit=300"}, faultNone, 0, time.Second, 10 * time.Second, nil, 1},
		{"exit not a number", map[string]string{annotationFault: "exit=x"}, faultNone, 0, time.Second, 10 * time.Second, nil, 1},
		{"never ready", map[string]string{annotationFault: " never-ready "}, faultNeverReady, 0, time.Second, 10 * time.Second, nil, 0},
		{"unknown", map[string]string{annotationFault: "explode"}, faultNone, 0, time.Second, 10 * time.Second, nil, 1},
		{"run seconds", map[string]string{annotationRunSeconds: "2.5"}, faultNone, 0, 2500 * time.Millisecond, 10 * time.Second, nil, 0},
		{"run seconds zero", map[string]string{annotationRunSeconds: "0"}, faultNone, 0, 0, 10 * time.Second, nil, 0},
		{"run seconds bad", map[string]string{annotationRunSeconds: "-1"}, faultNone, 0, time.Second, 10 * time.Second, nil, 1},
		{"backoff", map[string]string{annotationBackoffSeconds: "1"}, faultNone, 0, time.Second, time.Second, nil, 0},
		{"backoff zero is bad", map[string]string{annotationBackoffSeconds: "0"}, faultNone, 0, time.Second, 10 * time.Second, nil, 1},
		{"log", map[string]string{annotationLog: "one\ntwo\n"}, faultNone, 0, time.Second, 10 * time.Second, []string{"one", "two"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, warnings := parseFaults(tc.annotations)
			if f.Kind != tc.kind || f.ExitCode != tc.exit || f.RunFor != tc.runFor || f.InitialBackoff != tc.backoff {
				t.Errorf("got kind=%v exit=%d runFor=%v backoff=%v", f.Kind, f.ExitCode, f.RunFor, f.InitialBackoff)
			}
			if len(warnings) != tc.warnings {
				t.Errorf("warnings %q, want %d", warnings, tc.warnings)
			}
			if len(f.LogLines) != len(tc.logLines) {
				t.Fatalf("log lines %q, want %q", f.LogLines, tc.logLines)
			}
			for i := range tc.logLines {
				if f.LogLines[i] != tc.logLines[i] {
					t.Errorf("log line %d = %q, want %q", i, f.LogLines[i], tc.logLines[i])
				}
			}
		})
	}
}

func TestContainerPlans(t *testing.T) {
	cases := []struct {
		name   string
		fault  string
		policy v1.RestartPolicy
		want   containerPlan
	}{
		{"service runs forever", "", v1.RestartPolicyAlways, containerPlan{}},
		{"job completes", "", v1.RestartPolicyNever, containerPlan{Exits: true, RunFor: time.Second}},
		{"onfailure completes", "", v1.RestartPolicyOnFailure, containerPlan{Exits: true, RunFor: time.Second}},
		{"crashloop exits 1", "crashloop", v1.RestartPolicyAlways, containerPlan{Exits: true, RunFor: time.Second, ExitCode: 1}},
		{"exit=5 on a job", "exit=5", v1.RestartPolicyNever, containerPlan{Exits: true, RunFor: time.Second, ExitCode: 5}},
		{"exit=5 on a service", "exit=5", v1.RestartPolicyAlways, containerPlan{Exits: true, RunFor: time.Second, ExitCode: 5}},
		{"never-ready service runs", "never-ready", v1.RestartPolicyAlways, containerPlan{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := parseFaults(map[string]string{annotationFault: tc.fault})
			if got := f.mainContainerPlan(tc.policy); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	f, _ := parseFaults(map[string]string{annotationFault: "crashloop"})
	if got := f.initContainerPlan(false); got != (containerPlan{Exits: true, RunFor: 500 * time.Millisecond}) {
		t.Errorf("init containers ignore faults and run 0.5 s: %+v", got)
	}
	f, _ = parseFaults(map[string]string{annotationRunSeconds: "3"})
	if got := f.initContainerPlan(false); got.RunFor != 3*time.Second {
		t.Errorf("init containers take run-seconds when set: %+v", got)
	}
	if got := f.initContainerPlan(true); got.Exits {
		t.Errorf("a sidecar runs until deleted: %+v", got)
	}
}

func TestCrashBackoff(t *testing.T) {
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 300 * time.Second, 300 * time.Second}
	for i, w := range want {
		if got := crashBackoff(i+1, 10*time.Second); got != w {
			t.Errorf("exit %d: back-off %v, want %v", i+1, got, w)
		}
	}
	if got := crashBackoff(3, time.Second); got != 2*time.Second {
		t.Errorf("backoff-seconds 1, third exit: %v", got)
	}
	if got := crashBackoff(2, 400*time.Second); got != 400*time.Second {
		t.Errorf("an initial back-off above the cap is kept: %v", got)
	}
	if got := (10 * time.Second).String(); got != "10s" {
		t.Errorf("back-off message formatting: %q", got)
	}
}

func TestPullBackoff(t *testing.T) {
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	for i, w := range want {
		if got := pullBackoff(i + 1); got != w {
			t.Errorf("failure %d: %v, want %v", i+1, got, w)
		}
	}
}

func TestProbeDelays(t *testing.T) {
	c := &v1.Container{}
	if s, r := probeDelays(c); s != 0 || r != 0 {
		t.Errorf("no probes: %v %v", s, r)
	}
	c.ReadinessProbe = &v1.Probe{InitialDelaySeconds: 3}
	if s, r := probeDelays(c); s != 0 || r != 3*time.Second {
		t.Errorf("readiness: %v %v", s, r)
	}
	c.StartupProbe = &v1.Probe{InitialDelaySeconds: 2}
	if s, r := probeDelays(c); s != 2*time.Second || r != 5*time.Second {
		t.Errorf("startup + readiness: %v %v", s, r)
	}
}

func TestReadinessFailure(t *testing.T) {
	msg, period := readinessFailure(&v1.Container{ReadinessProbe: &v1.Probe{PeriodSeconds: 5, ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{}}}})
	if msg != "Readiness probe failed: HTTP probe failed with statuscode: 503" || period != 5*time.Second {
		t.Errorf("http probe: %q %v", msg, period)
	}
	if _, period := readinessFailure(&v1.Container{}); period != 10*time.Second {
		t.Errorf("default period %v", period)
	}
}
