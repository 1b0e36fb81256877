package main

// Events, through client-go's event recorder like the kubelet's (cmd/kubelet/app/server.go
// makeEventRecorder: a broadcaster to the core v1 Events API, source component "kubelet",
// host <node>). Involved objects: the pod, with fieldPath spec.containers{C} or
// spec.initContainers{C} for container events (pkg/kubelet/container/ref.go
// GenerateContainerRef), or the Node. Reasons are those of pkg/kubelet/events/event.go.

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Event reasons (pkg/kubelet/events/event.go).
const (
	eventCreated           = "Created"
	eventStarted           = "Started"
	eventFailed            = "Failed"
	eventKilling           = "Killing"
	eventBackOff           = "BackOff"
	eventPulling           = "Pulling"
	eventPulled            = "Pulled"
	eventInspectFailed     = "InspectFailed"
	eventErrImageNeverPull = "ErrImageNeverPull"
	eventFailedMount       = "FailedMount"
	eventUnhealthy         = "Unhealthy"
	eventStarting          = "Starting"
	eventNodeReady         = "NodeReady"
	eventFailedValidation  = "FailedValidation"
)

// repeatEvery is how often an event that repeats while a condition lasts (back-off, missing
// image, missing config) is emitted again; the recorder's correlator counts them.
const repeatEvery = 10 * time.Second

type events struct {
	recorder record.EventRecorder
	mu       sync.Mutex
	last     map[string]time.Time
}

func newEvents(ctx context.Context, client kubernetes.Interface, nodeName string) *events {
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	go func() {
		<-ctx.Done()
		b.Shutdown()
	}()
	return &events{
		recorder: b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: nodeName}),
		last:     map[string]time.Time{},
	}
}

// emit records an event (a nil receiver does nothing: tests, no API yet).
func (e *events) emit(ref *v1.ObjectReference, eventType, reason, message string) {
	if e == nil || ref == nil {
		return
	}
	e.recorder.Event(ref, eventType, reason, message)
}

// emitRepeating records the event unless the same one was recorded less than repeatEvery ago.
func (e *events) emitRepeating(ref *v1.ObjectReference, eventType, reason, message string, now time.Time) {
	if e == nil || ref == nil {
		return
	}
	key := fmt.Sprintf("%s/%s/%s/%s/%s", ref.UID, ref.FieldPath, eventType, reason, message)
	e.mu.Lock()
	last, seen := e.last[key]
	if seen && now.Sub(last) < repeatEvery {
		e.mu.Unlock()
		return
	}
	e.last[key] = now
	if len(e.last) > 10000 { // forget old keys now and then
		for k, t := range e.last {
			if now.Sub(t) > time.Hour {
				delete(e.last, k)
			}
		}
	}
	e.mu.Unlock()
	e.recorder.Event(ref, eventType, reason, message)
}

// podRef is the pod as an involved object (k8s.io/client-go/tools/reference GetReference).
func podRef(pod *v1.Pod) *v1.ObjectReference {
	return &v1.ObjectReference{
		Kind:            "Pod",
		APIVersion:      "v1",
		Namespace:       pod.Namespace,
		Name:            pod.Name,
		UID:             pod.UID,
		ResourceVersion: pod.ResourceVersion,
	}
}

// containerRef adds the container's field path (pkg/kubelet/container/ref.go fieldPath).
func containerRef(pod *v1.Pod, name string, init bool) *v1.ObjectReference {
	ref := podRef(pod)
	if init {
		ref.FieldPath = fmt.Sprintf("spec.initContainers{%s}", name)
	} else {
		ref.FieldPath = fmt.Sprintf("spec.containers{%s}", name)
	}
	return ref
}

// nodeRef: the kubelet uses the node name as the UID of its node reference
// (pkg/kubelet/kubelet.go nodeRef).
func nodeRef(nodeName string) *v1.ObjectReference {
	return &v1.ObjectReference{Kind: "Node", Name: nodeName, UID: types.UID(nodeName)}
}
