package main

// Pods bound to this node (everything but mirror pods): a shared informer on pods with
// spec.nodeName=<node> (pkg/kubelet/config/apiserver.go), one worker goroutine per pod UID
// (pkg/kubelet/pod_workers.go), status written the way the status manager does
// (pkg/kubelet/status/status_manager.go: only when it changed, never reverting a terminal
// phase, and the pod deleted with grace period 0 and a UID precondition once its containers
// are stopped).

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	workerTick      = 250 * time.Millisecond
	podCIDRWait     = 5 * time.Second
	deleteRetryWait = time.Second
)

type podManager struct {
	client   kubernetes.Interface
	nodes    *nodeManager
	nodeName string
	nodeIP   string
	logDir   string
	cri      imageService
	events   *events
	logs     *logRegistry

	mu      sync.Mutex
	workers map[types.UID]*workerHandle

	poolMu sync.Mutex
	pool   *ipPool
}

type workerHandle struct {
	updates chan *v1.Pod
	cancel  context.CancelFunc
	done    chan struct{}
}

func newPodManager(client kubernetes.Interface, nodes *nodeManager, opts *options, cri imageService, ev *events, logs *logRegistry) *podManager {
	return &podManager{client: client, nodes: nodes, nodeName: opts.NodeName, nodeIP: opts.NodeIP, logDir: opts.LogDir,
		cri: cri, events: ev, logs: logs, workers: map[types.UID]*workerHandle{}}
}

func isMirrorPod(pod *v1.Pod) bool {
	_, ok := pod.Annotations[configMirrorAnnotation]
	return ok
}

// Run watches the node's pods until ctx ends.
func (m *podManager) Run(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(m.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", m.nodeName).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { m.onPod(ctx, obj) },
		UpdateFunc: func(_, obj interface{}) { m.onPod(ctx, obj) },
		DeleteFunc: m.onDelete,
	})
	if err != nil {
		klog.Errorf("pods: informer: %v", err)
		return
	}
	factory.Start(ctx.Done())
	if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		klog.Infof("pods: watching pods bound to %s", m.nodeName)
	}
	<-ctx.Done()
	factory.Shutdown()
	m.mu.Lock()
	var handles []*workerHandle
	for _, h := range m.workers {
		handles = append(handles, h)
	}
	m.mu.Unlock()
	for _, h := range handles {
		h.cancel()
		<-h.done
	}
}

func (m *podManager) onPod(ctx context.Context, obj interface{}) {
	pod, ok := obj.(*v1.Pod)
	if !ok || isMirrorPod(pod) {
		return
	}
	m.mu.Lock()
	h := m.workers[pod.UID]
	if h == nil {
		wctx, cancel := context.WithCancel(ctx)
		h = &workerHandle{updates: make(chan *v1.Pod, 1), cancel: cancel, done: make(chan struct{})}
		m.workers[pod.UID] = h
		m.mu.Unlock()
		w := newPodWorker(wctx, m.env(), pod)
		if w.podIP != "" && !pod.Spec.HostNetwork && !isTerminalPhase(pod.Status.Phase) {
			m.reserveIP(pod.UID, w.podIP)
		}
		m.logs.Register(pod.Namespace, pod.Name, pod.UID, w.logTarget)
		klog.Infof("pods: %s/%s (uid %s) bound to this node", pod.Namespace, pod.Name, pod.UID)
		go m.runWorker(wctx, h, w)
		return
	}
	m.mu.Unlock()
	// Latest wins: replace an update the worker has not taken yet.
	select {
	case <-h.updates:
	default:
	}
	select {
	case h.updates <- pod:
	default:
	}
}

func (m *podManager) onDelete(obj interface{}) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok || isMirrorPod(pod) {
		return
	}
	m.mu.Lock()
	h := m.workers[pod.UID]
	delete(m.workers, pod.UID)
	m.mu.Unlock()
	if h != nil {
		h.cancel()
	}
	m.releaseIP(pod.UID)
	m.logs.Unregister(pod.Namespace, pod.Name, pod.UID)
	// The pod's log directory goes with the pod (kuberuntime/kuberuntime_gc.go
	// evictPodLogsDirectories).
	go func() {
		if h != nil {
			<-h.done
		}
		_ = os.RemoveAll(podLogsDir(m.logDir, pod.Namespace, pod.Name, pod.UID))
	}()
	klog.Infof("pods: %s/%s (uid %s) deleted", pod.Namespace, pod.Name, pod.UID)
}

func (m *podManager) env() *podEnv {
	return &podEnv{
		images:    m.cri,
		objects:   func() objectGetter { return newAPIGetter(context.Background(), m.client) },
		events:    m.events,
		allocIP:   m.allocateIP,
		releaseIP: m.releaseIP,
		hostIP:    m.nodeIP,
		logDir:    m.logDir,
	}
}

// resourceVersionNewer: is a at least as new as b? (etcd revisions are integers)
func resourceVersionNewer(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return x >= y
}

func (m *podManager) runWorker(ctx context.Context, h *workerHandle, w *podWorker) {
	defer close(h.done)
	t := time.NewTicker(workerTick)
	defer t.Stop()
	var nextDelete time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-h.updates:
			if resourceVersionNewer(p.ResourceVersion, w.pod.ResourceVersion) {
				w.setPod(p)
			}
		case <-t.C:
		}
		if w.deleted {
			continue
		}
		now := time.Now()
		if w.pod.DeletionTimestamp != nil {
			if !w.killed {
				if st := w.kill(now); w.changed(st) {
					m.writeStatus(ctx, w, st)
				}
			}
			if now.After(nextDelete) {
				nextDelete = now.Add(deleteRetryWait)
				m.deletePod(ctx, w)
			}
			continue
		}
		if st := w.step(now); w.changed(st) {
			m.writeStatus(ctx, w, st)
		}
	}
}

// deletePod removes a pod whose containers are stopped (status_manager.go syncPod:
// Delete with grace period 0 and the pod's UID as precondition).
func (m *podManager) deletePod(ctx context.Context, w *podWorker) {
	pod := w.pod
	err := m.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		w.deleted = true
		m.releaseIP(pod.UID)
		klog.Infof("pods: %s/%s stopped and deleted", pod.Namespace, pod.Name)
		return
	}
	if ctx.Err() == nil {
		klog.Warningf("pods: deleting %s/%s: %v (retrying)", pod.Namespace, pod.Name, err)
	}
}

// writeStatus puts the status on the pod (UpdateStatus of the status subresource, re-read
// on conflict); a terminal phase on the API side is never replaced by a non-terminal one.
func (m *podManager) writeStatus(ctx context.Context, w *podWorker, st v1.PodStatus) {
	pod := w.pod
	pods := m.client.CoreV1().Pods(pod.Namespace)
	for attempt := 0; attempt < 3; attempt++ {
		if isTerminalPhase(pod.Status.Phase) && !isTerminalPhase(st.Phase) {
			w.markWritten(st)
			return
		}
		updated := pod.DeepCopy()
		updated.Status = mergeIntoAPIStatus(st, pod.Status)
		result, err := pods.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		if err == nil {
			w.markWritten(st)
			w.setPod(result)
			klog.Infof("pods: %s/%s: %s", pod.Namespace, pod.Name, describe(st))
			return
		}
		if apierrors.IsNotFound(err) {
			w.markWritten(st)
			return
		}
		if !apierrors.IsConflict(err) {
			if ctx.Err() == nil {
				klog.Warningf("pods: status of %s/%s: %v", pod.Namespace, pod.Name, err)
			}
			return // retried at the next tick: the status still differs
		}
		fresh, gerr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil || fresh.UID != pod.UID {
			if apierrors.IsNotFound(gerr) || (gerr == nil && fresh.UID != pod.UID) {
				w.markWritten(st)
			}
			return
		}
		pod = fresh
		w.setPod(fresh)
	}
}

// ensurePool makes the IP pool from node.spec.podCIDR (set by the controller manager's
// node IPAM shortly after registration), waiting for it a little, else 10.244.0.0/24.
func (m *podManager) ensurePool() *ipPool {
	m.poolMu.Lock()
	defer m.poolMu.Unlock()
	if m.pool != nil {
		return m.pool
	}
	cidr := ""
	deadline := time.Now().Add(podCIDRWait)
	for {
		if n := m.nodes.Node(); n != nil && n.Spec.PodCIDR != "" {
			cidr = n.Spec.PodCIDR
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n, err := m.client.CoreV1().Nodes().Get(ctx, m.nodeName, metav1.GetOptions{})
		cancel()
		if err == nil && n.Spec.PodCIDR != "" {
			cidr = n.Spec.PodCIDR
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	pool, err := newIPPool(cidr)
	if err != nil {
		if cidr != "" {
			klog.Warningf("pods: %v: using %s", err, defaultPodCIDR)
		}
		pool, _ = newIPPool(defaultPodCIDR)
	}
	klog.Infof("pods: pod IPs from %s", pool.CIDR())
	m.pool = pool
	return pool
}

func (m *podManager) allocateIP(pod *v1.Pod) (string, error) {
	if pod.Spec.HostNetwork {
		if m.nodeIP == "" {
			return "", errors.New("host network pod and no node IP")
		}
		return m.nodeIP, nil
	}
	a, err := m.ensurePool().Allocate(pod.UID)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

func (m *podManager) reserveIP(uid types.UID, ip string) {
	if !m.ensurePool().Reserve(uid, ip) {
		klog.Warningf("pods: %s keeps %s, outside the pool or taken", uid, ip)
	}
}

func (m *podManager) releaseIP(uid types.UID) {
	m.poolMu.Lock()
	pool := m.pool
	m.poolMu.Unlock()
	if pool != nil {
		pool.Release(uid)
	}
}
