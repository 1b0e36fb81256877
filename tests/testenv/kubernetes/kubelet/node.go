package main

// The Node: registration (pkg/kubelet/kubelet_node_status.go registerWithAPIServer,
// initialNode, reconcile of an existing Node), status (pkg/kubelet/nodestatus/setters.go:
// addresses, machine info, version info, images, conditions, daemon endpoints), the status
// heartbeat as a strategic merge patch of the status subresource
// (k8s.io/component-helpers/node/util PatchNodeStatus, as tryUpdateNodeStatus does) and the
// node Lease (pkg/kubelet/kubelet.go with k8s.io/component-helpers/apimachinery/lease,
// owner reference from pkg/kubelet/util/nodelease.go).

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/apimachinery/lease"
	nodeutil "k8s.io/component-helpers/node/util"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

const (
	kubeletVersion          = "v1.36.3"
	nodeStatusUpdatePeriod  = 10 * time.Second
	leaseDurationSeconds    = 40
	leaseRenewInterval      = 10 * time.Second
	leaseNamespace          = "kube-node-lease"
	registrationRetryPeriod = 500 * time.Millisecond
)

// nodeFacts is what the node reports about itself.
type nodeFacts struct {
	Name           string
	IP             string
	Labels         map[string]string // --node-labels
	ProviderID     string
	Capacity       v1.ResourceList
	Info           v1.NodeSystemInfo
	KubeletPort    int32
	Images         []v1.ContainerImage
	RuntimeVersion string
}

// defaultNodeLabels are the labels the kubelet sets and reconciles
// (kubelet_node_status.go initialNode, updateDefaultLabels).
func defaultNodeLabels(name string) map[string]string {
	return map[string]string{
		v1.LabelHostname:          name,
		v1.LabelOSStable:          runtime.GOOS,
		v1.LabelArchStable:        runtime.GOARCH,
		"beta.kubernetes.io/os":   runtime.GOOS,
		"beta.kubernetes.io/arch": runtime.GOARCH,
	}
}

// initialNode is the Node the kubelet registers (kubelet_node_status.go initialNode).
func initialNode(f nodeFacts, now time.Time) *v1.Node {
	labels := map[string]string{}
	for k, v := range f.Labels {
		labels[k] = v
	}
	for k, v := range defaultNodeLabels(f.Name) {
		labels[k] = v
	}
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   f.Name,
			Labels: labels,
			// volume/util ControllerManagedAttachAnnotation: attach/detach by the controller manager
			Annotations: map[string]string{"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
		},
		Spec: v1.NodeSpec{ProviderID: f.ProviderID},
	}
	node.Status = nodeStatus(v1.NodeStatus{}, f, now)
	return node
}

// nodeConditions in the kubelet's order (nodestatus setters: MemoryPressure,
// DiskPressure, PIDPressure, then Ready); `kind create cluster --wait` reads the last one.
var nodeConditions = []struct {
	Type    v1.NodeConditionType
	Status  v1.ConditionStatus
	Reason  string
	Message string
}{
	{v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
	{v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
	{v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"},
	{v1.NodeReady, v1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"},
}

// nodeStatus computes the status from the facts, keeping conditions set by others (before
// Ready, which stays last) and the transition times of unchanged conditions.
func nodeStatus(old v1.NodeStatus, f nodeFacts, now time.Time) v1.NodeStatus {
	s := v1.NodeStatus{
		Capacity:        f.Capacity.DeepCopy(),
		Allocatable:     f.Capacity.DeepCopy(),
		Phase:           old.Phase,
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: f.KubeletPort}},
		NodeInfo:        f.Info,
		Images:          f.Images,
		VolumesInUse:    old.VolumesInUse,
		VolumesAttached: old.VolumesAttached,
		Config:          old.Config,
	}
	s.NodeInfo.ContainerRuntimeVersion = f.RuntimeVersion
	if s.NodeInfo.ContainerRuntimeVersion == "" {
		s.NodeInfo.ContainerRuntimeVersion = old.NodeInfo.ContainerRuntimeVersion
	}
	if f.IP != "" {
		s.Addresses = append(s.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: f.IP})
	}
	s.Addresses = append(s.Addresses, v1.NodeAddress{Type: v1.NodeHostName, Address: f.Name})

	heartbeat := metav1.NewTime(now.Truncate(time.Second))
	mine := map[v1.NodeConditionType]bool{}
	for _, c := range nodeConditions {
		mine[c.Type] = true
	}
	var others []v1.NodeCondition
	for _, c := range old.Conditions {
		if !mine[c.Type] {
			others = append(others, c)
		}
	}
	for _, c := range nodeConditions {
		cond := v1.NodeCondition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message,
			LastHeartbeatTime: heartbeat, LastTransitionTime: heartbeat}
		for _, o := range old.Conditions {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				cond.LastTransitionTime = o.LastTransitionTime
			}
		}
		if c.Type == v1.NodeReady {
			s.Conditions = append(s.Conditions, others...)
		}
		s.Conditions = append(s.Conditions, cond)
	}
	return s
}

type nodeManager struct {
	client kubernetes.Interface
	cri    *criClient
	opts   *options
	events *events

	mu          sync.Mutex
	node        *v1.Node
	facts       nodeFacts
	registered  chan struct{}
	announced   bool
	lastImgErr  string
	versionWarn bool
}

func newNodeManager(client kubernetes.Interface, cri *criClient, opts *options, ev *events) *nodeManager {
	return &nodeManager{client: client, cri: cri, opts: opts, events: ev, registered: make(chan struct{}),
		facts: machineFacts(opts)}
}

// Node is the last Node object read from or written to the API (nil before registration).
func (n *nodeManager) Node() *v1.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.node == nil {
		return nil
	}
	return n.node.DeepCopy()
}

func (n *nodeManager) setNode(node *v1.Node) {
	n.mu.Lock()
	n.node = node
	n.mu.Unlock()
}

func (n *nodeManager) Registered() <-chan struct{} { return n.registered }

// Run registers the node (retrying every 500 ms: the API server is itself a static pod of
// this node), then renews the lease and the status until ctx ends.
func (n *nodeManager) Run(ctx context.Context) {
	n.events.emit(nodeRef(n.opts.NodeName), v1.EventTypeNormal, eventStarting, "Starting kubelet.")
	attempt := 0
	for ctx.Err() == nil {
		err := n.register(ctx)
		if err == nil {
			break
		}
		if attempt%20 == 0 {
			klog.Infof("node: registering %s: %v (retrying every %v)", n.opts.NodeName, err, registrationRetryPeriod)
		}
		attempt++
		select {
		case <-ctx.Done():
			return
		case <-time.After(registrationRetryPeriod):
		}
	}
	if ctx.Err() != nil {
		return
	}
	close(n.registered)

	lc := lease.NewController(clock.RealClock{}, n.client, n.opts.NodeName, leaseDurationSeconds, nil,
		leaseRenewInterval, n.opts.NodeName, leaseNamespace, n.setLeaseOwner)
	go lc.Run(ctx)

	t := time.NewTicker(nodeStatusUpdatePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := n.heartbeat(ctx); err != nil {
				klog.Warningf("node: status update: %v", err)
			}
		}
	}
}

// setLeaseOwner makes the Node own its Lease (pkg/kubelet/util/nodelease.go SetNodeOwnerFunc).
func (n *nodeManager) setLeaseOwner(l *coordinationv1.Lease) error {
	if len(l.OwnerReferences) > 0 {
		return nil
	}
	node := n.Node()
	if node == nil || node.UID == "" {
		return nil
	}
	l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
	return nil
}

// refreshFacts asks containerd for its version and images.
func (n *nodeManager) refreshFacts(ctx context.Context) nodeFacts {
	n.mu.Lock()
	f := n.facts
	n.mu.Unlock()
	if v, err := n.cri.RuntimeVersion(ctx); err == nil {
		f.RuntimeVersion = v
	} else if !n.versionWarn {
		klog.Warningf("node: CRI version: %v", err)
		n.versionWarn = true
	}
	if imgs, err := n.cri.ListImages(ctx); err == nil {
		f.Images = nodeImages(imgs)
	} else if err.Error() != n.lastImgErr {
		klog.Warningf("node: CRI image list: %v", err)
		n.lastImgErr = err.Error()
	}
	n.mu.Lock()
	n.facts = f
	n.mu.Unlock()
	return f
}

func (n *nodeManager) register(ctx context.Context) error {
	f := n.refreshFacts(ctx)
	nodes := n.client.CoreV1().Nodes()
	created, err := nodes.Create(ctx, initialNode(f, time.Now()), metav1.CreateOptions{})
	if err == nil {
		n.setNode(created)
		klog.Infof("node: registered %s (InternalIP %s)", created.Name, f.IP)
		n.announce()
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	// The Node exists (kubelet restart): reconcile the default labels and the provider ID
	// (kubelet_node_status.go tryRegisterWithAPIServer / reconcileExtendedResource ...).
	existing, err := nodes.Get(ctx, n.opts.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	updated := existing.DeepCopy()
	if updated.Labels == nil {
		updated.Labels = map[string]string{}
	}
	for k, v := range defaultNodeLabels(f.Name) {
		updated.Labels[k] = v
	}
	for k, v := range f.Labels {
		if _, ok := updated.Labels[k]; !ok {
			updated.Labels[k] = v
		}
	}
	if updated.Spec.ProviderID == "" {
		updated.Spec.ProviderID = f.ProviderID
	}
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	updated.Annotations["volumes.kubernetes.io/controller-managed-attach-detach"] = "true"
	if updated, err = nodes.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return err
	}
	n.setNode(updated)
	if err := n.patchStatus(ctx, updated, f); err != nil {
		return err
	}
	klog.Infof("node: %s was registered already; labels and status reconciled", updated.Name)
	n.announce()
	return nil
}

// announce records the node events a starting kubelet records
// (kubelet_node_status.go recordNodeStatusEvent: "Node %s status is now: %s").
func (n *nodeManager) announce() {
	if n.announced {
		return
	}
	n.announced = true
	ref := nodeRef(n.opts.NodeName)
	for _, e := range []string{"NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", eventNodeReady} {
		n.events.emit(ref, v1.EventTypeNormal, e, fmt.Sprintf("Node %s status is now: %s", n.opts.NodeName, e))
	}
}

func (n *nodeManager) heartbeat(ctx context.Context) error {
	f := n.refreshFacts(ctx)
	old, err := n.client.CoreV1().Nodes().Get(ctx, n.opts.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		klog.Warningf("node: %s was deleted: registering it again", n.opts.NodeName)
		n.announced = false
		return n.register(ctx)
	}
	if err != nil {
		return err
	}
	n.setNode(old)
	return n.patchStatus(ctx, old, f)
}

func (n *nodeManager) patchStatus(ctx context.Context, old *v1.Node, f nodeFacts) error {
	updated := old.DeepCopy()
	updated.Status = nodeStatus(old.Status, f, time.Now())
	result, _, err := nodeutil.PatchNodeStatus(n.client.CoreV1(), types.NodeName(old.Name), old, updated)
	if err != nil {
		return err
	}
	n.setNode(result)
	return nil
}

// machineFacts reads the machine (nodestatus/setters.go MachineInfo, NodeAddress).
func machineFacts(o *options) nodeFacts {
	f := nodeFacts{
		Name:        o.NodeName,
		IP:          o.NodeIP,
		Labels:      o.NodeLabels,
		ProviderID:  o.ProviderID,
		KubeletPort: int32(o.Port),
		Capacity: v1.ResourceList{
			v1.ResourceCPU:                   *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
			v1.ResourceMemory:                *resource.NewQuantity(memTotalBytes(), resource.BinarySI),
			v1.ResourcePods:                  *resource.NewQuantity(int64(o.MaxPods), resource.DecimalSI),
			v1.ResourceEphemeralStorage:      *resource.NewQuantity(diskBytes("/var"), resource.BinarySI),
			v1.ResourceName("hugepages-1Gi"): *resource.NewQuantity(0, resource.DecimalSI),
			v1.ResourceName("hugepages-2Mi"): *resource.NewQuantity(0, resource.DecimalSI),
		},
		Info: v1.NodeSystemInfo{
			MachineID:       readTrimmed("/etc/machine-id"),
			SystemUUID:      readTrimmed("/sys/class/dmi/id/product_uuid"),
			BootID:          readTrimmed("/proc/sys/kernel/random/boot_id"),
			KernelVersion:   readTrimmed("/proc/sys/kernel/osrelease"),
			OSImage:         osImage(),
			KubeletVersion:  kubeletVersion,
			OperatingSystem: runtime.GOOS,
			Architecture:    runtime.GOARCH,
		},
	}
	if f.Info.SystemUUID == "" {
		f.Info.SystemUUID = f.Info.MachineID
	}
	return f
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func memTotalBytes() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
			return kb * 1024
		}
	}
	return 0
}

func diskBytes(path string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * int64(st.Bsize)
}

func osImage() string {
	content := readTrimmed("/etc/os-release")
	for _, line := range strings.Split(content, "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}
