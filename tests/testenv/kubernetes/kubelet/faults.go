package main

// Fault injection and run-time knobs, read from pod annotations only (set them on a
// workload's pod template). The list and their meaning are in main.go's header comment.

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
)

const (
	annotationFault          = "kindling.test/fault"
	annotationRunSeconds     = "kindling.test/run-seconds"
	annotationBackoffSeconds = "kindling.test/backoff-seconds"
	annotationLog            = "kindling.test/log"

	defaultRunFor     = time.Second
	defaultInitRunFor = 500 * time.Millisecond

	// Container restart back-off: 10 s doubling to 300 s (pkg/kubelet/kubelet.go backOffPeriod,
	// pkg/kubelet/apis/config/v1beta1/defaults.go MaxContainerBackOff).
	defaultCrashBackoff = 10 * time.Second
	maxCrashBackoff     = 300 * time.Second
	// Image pull back-off: the same figures (pkg/kubelet/kubelet.go imageBackOff).
	initialPullBackoff = 10 * time.Second
	maxPullBackoff     = 300 * time.Second
)

type faultKind int

const (
	faultNone faultKind = iota
	faultCrashLoop
	faultExit
	faultNeverReady
)

// podFaults is what a pod's annotations ask of the simulated containers.
type podFaults struct {
	Kind     faultKind
	ExitCode int32 // faultExit: the exit code; faultCrashLoop: 1
	// RunFor is how long a container "runs" before it exits when it exits at all
	// (run-to-completion pods, crash loops, init containers when set).
	RunFor    time.Duration
	RunForSet bool
	// InitialBackoff is the first crash-loop back-off (10 s unless backoff-seconds is set).
	InitialBackoff time.Duration
	// LogLines replace the default log lines when kindling.test/log is set.
	LogLines []string
}

// parseFaults reads the annotations; it never fails: bad values are reported as warnings
// and the default is used instead.
func parseFaults(annotations map[string]string) (podFaults, []string) {
	f := podFaults{RunFor: defaultRunFor, InitialBackoff: defaultCrashBackoff}
	var warnings []string
	if raw, ok := annotations[annotationFault]; ok {
		value := strings.TrimSpace(raw)
		switch {
		case value == "crashloop":
			f.Kind, f.ExitCode = faultCrashLoop, 1
		case value == "never-ready":
			f.Kind = faultNeverReady
		case strings.HasPrefix(value, "exit="):
			code, err := strconv.ParseInt(strings.TrimPrefix(value, "exit="), 10, 32)
			if err != nil || code < 0 || code > 255 {
				warnings = append(warnings, fmt.Sprintf("%s: %q: the exit code must be 0..255", annotationFault, raw))
			} else {
				f.Kind, f.ExitCode = faultExit, int32(code)
			}
		case value == "":
		default:
			warnings = append(warnings, fmt.Sprintf("%s: unknown fault %q (crashloop, exit=N, never-ready)", annotationFault, raw))
		}
	}
	if raw, ok := annotations[annotationRunSeconds]; ok {
		if d, err := parseSeconds(raw, true); err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: %v", annotationRunSeconds, err))
		} else {
			f.RunFor, f.RunForSet = d, true
		}
	}
	if raw, ok := annotations[annotationBackoffSeconds]; ok {
		if d, err := parseSeconds(raw, false); err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: %v", annotationBackoffSeconds, err))
		} else {
			f.InitialBackoff = d
		}
	}
	if raw, ok := annotations[annotationLog]; ok {
		f.LogLines = strings.Split(strings.TrimRight(raw, "\n"), "\n")
	}
	return f, warnings
}

func parseSeconds(raw string, zeroOK bool) (time.Duration, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
	if err != nil || v < 0 || (v == 0 && !zeroOK) || v > 86400 {
		return 0, fmt.Errorf("%q is not a number of seconds", raw)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// containerPlan is how one start of a simulated container ends.
type containerPlan struct {
	Exits    bool          // false: runs until the pod is deleted
	RunFor   time.Duration // when Exits
	ExitCode int32
}

// mainContainerPlan: faults apply to regular containers. Without a fault a container of a
// restartPolicy Always pod runs until deleted; a run-to-completion one (Never, OnFailure)
// exits 0 after run-seconds.
func (f podFaults) mainContainerPlan(restartPolicy v1.RestartPolicy) containerPlan {
	switch f.Kind {
	case faultCrashLoop, faultExit:
		return containerPlan{Exits: true, RunFor: f.RunFor, ExitCode: f.ExitCode}
	}
	if restartPolicy == v1.RestartPolicyNever || restartPolicy == v1.RestartPolicyOnFailure {
		return containerPlan{Exits: true, RunFor: f.RunFor}
	}
	return containerPlan{}
}

// initContainerPlan: regular init containers complete with 0 after ~0.5 s (or run-seconds);
// restartable ("sidecar") init containers run until deleted.
func (f podFaults) initContainerPlan(sidecar bool) containerPlan {
	if sidecar {
		return containerPlan{}
	}
	runFor := defaultInitRunFor
	if f.RunForSet {
		runFor = f.RunFor
	}
	return containerPlan{Exits: true, RunFor: runFor}
}

// terminatedReason is containerd's reason for an exit (kuberuntime helpers: Completed, Error).
func terminatedReason(exitCode int32) string {
	if exitCode == 0 {
		return "Completed"
	}
	return "Error"
}

// exponentialBackoff returns initial*2^(n-1) capped at limit (n >= 1), the sequence of
// client-go's flowcontrol.Backoff without jitter.
func exponentialBackoff(initial, limit time.Duration, n int) time.Duration {
	if n < 1 {
		return 0
	}
	limit = max(limit, initial)
	d := initial
	for i := 1; i < n; i++ {
		d *= 2
		if d >= limit {
			return limit
		}
	}
	return d
}

// crashBackoff is the wait before the next start after the exits-th exit of a container
// that is restarted (kuberuntime_manager.go doBackOff with flowcontrol.Backoff): the first
// exit has no entry yet, so it restarts at once; then initial, 2*initial, ... up to 300 s.
func crashBackoff(exits int, initial time.Duration) time.Duration {
	if exits <= 1 {
		return 0
	}
	return exponentialBackoff(initial, maxCrashBackoff, exits-1)
}

// pullBackoff is the wait after the failures-th failed pull (images/image_manager.go
// pullImage: backOff.Next after each failure).
func pullBackoff(failures int) time.Duration {
	return exponentialBackoff(initialPullBackoff, maxPullBackoff, failures)
}

// probeDelays: a container is "started" after the startup probe's initialDelaySeconds and
// ready after the readiness probe's initialDelaySeconds past that (the prober's first
// successful probe, pkg/kubelet/prober/worker.go); no probe means at once.
func probeDelays(c *v1.Container) (started, ready time.Duration) {
	if c.StartupProbe != nil {
		started = time.Duration(c.StartupProbe.InitialDelaySeconds) * time.Second
	}
	ready = started
	if c.ReadinessProbe != nil {
		ready += time.Duration(c.ReadinessProbe.InitialDelaySeconds) * time.Second
	}
	return started, ready
}

// readinessFailure is the Unhealthy event text for the never-ready fault, worded like the
// prober's results for the probe's handler (pkg/kubelet/prober/prober.go).
func readinessFailure(c *v1.Container) (message string, period time.Duration) {
	period = 10 * time.Second
	p := c.ReadinessProbe
	if p == nil {
		return "Readiness probe failed: simulated failure (" + annotationFault + ": never-ready)", period
	}
	if p.PeriodSeconds > 0 {
		period = time.Duration(p.PeriodSeconds) * time.Second
	}
	switch {
	case p.HTTPGet != nil:
		return "Readiness probe failed: HTTP probe failed with statuscode: 503", period
	case p.TCPSocket != nil:
		return fmt.Sprintf("Readiness probe failed: dial tcp: connect to port %s: connection refused", p.TCPSocket.Port.String()), period
	case p.GRPC != nil:
		return "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")", period
	default:
		return "Readiness probe failed: command exited with 1", period
	}
}
