package main

// Mirror pods: the API objects of static pods (pkg/kubelet/pod/mirror_client.go
// CreateMirrorPod/DeleteMirrorPod; kubelet.go syncPod recreates a mirror pod whose hash is
// stale or that is being deleted, and deletes orphaned ones), with the static pod's status
// written to them (status/status_manager.go translates the static pod UID to the mirror's).
// Best effort: failures are logged and retried; node registration never waits on them.

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const mirrorSyncPeriod = 2 * time.Second

type mirrorManager struct {
	client  kubernetes.Interface
	nodes   *nodeManager
	static  *staticPodManager
	cri     *criClient
	nodeIP  string
	written map[types.UID]v1.PodStatus // mirror pod UID -> status last written
	images  map[string]string          // spec image -> image ID, from CRI
	logged  map[string]string          // pod -> last error logged
}

func newMirrorManager(client kubernetes.Interface, nodes *nodeManager, static *staticPodManager, cri *criClient, nodeIP string) *mirrorManager {
	return &mirrorManager{client: client, nodes: nodes, static: static, cri: cri, nodeIP: nodeIP,
		written: map[types.UID]v1.PodStatus{}, images: map[string]string{}, logged: map[string]string{}}
}

func (mm *mirrorManager) Run(ctx context.Context) {
	t := time.NewTicker(mirrorSyncPeriod)
	defer t.Stop()
	for {
		mm.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (mm *mirrorManager) logOnce(key string, err error) {
	if err == nil {
		delete(mm.logged, key)
		return
	}
	if mm.logged[key] != err.Error() {
		klog.Warningf("mirror pods: %s: %v", key, err)
		mm.logged[key] = err.Error()
	}
}

// mirrorPodFor is the object created for a static pod (mirror_client.go CreateMirrorPod:
// config.mirror = the static pod's hash, owned by the Node).
func mirrorPodFor(static *v1.Pod, node *v1.Node) *v1.Pod {
	m := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        static.Name,
			Namespace:   static.Namespace,
			Labels:      static.Labels,
			Annotations: map[string]string{},
		},
		Spec: *static.Spec.DeepCopy(),
	}
	for k, v := range static.Annotations {
		m.Annotations[k] = v
	}
	m.Annotations[configMirrorAnnotation] = static.Annotations[configHashAnnotation]
	m.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID, Controller: ptr.To(true),
	}}
	return m
}

// sync lists the node's pods (a node may not get a pod that is not bound to it, so a
// missing mirror pod is found by listing, as the kubelet's pod manager does from its watch).
func (mm *mirrorManager) sync(ctx context.Context) {
	node := mm.nodes.Node()
	if node == nil || node.UID == "" {
		return
	}
	list, err := mm.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node.Name).String()})
	if err != nil {
		mm.logOnce("list", err)
		return
	}
	mm.logOnce("list", nil)
	existing := map[string]*v1.Pod{}
	for i := range list.Items {
		if p := &list.Items[i]; isMirrorPod(p) {
			existing[p.Namespace+"/"+p.Name] = p
		}
	}
	pods := mm.client.CoreV1().Pods
	wanted := map[string]bool{}
	for _, view := range mm.static.Snapshot() {
		static := view.Pod
		key := static.Namespace + "/" + static.Name
		wanted[key] = true
		mirror := existing[key]
		if mirror == nil {
			created, err := pods(static.Namespace).Create(ctx, mirrorPodFor(static, node), metav1.CreateOptions{})
			if err != nil {
				mm.logOnce(key, err)
				continue
			}
			klog.Infof("mirror pods: created %s", key)
			mirror = created
		}
		if mirror.Annotations[configMirrorAnnotation] != static.Annotations[configHashAnnotation] || mirror.DeletionTimestamp != nil {
			// Stale or being deleted: delete now, recreated on the next round.
			err := pods(static.Namespace).Delete(ctx, mirror.Name, metav1.DeleteOptions{
				GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &mirror.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				mm.logOnce(key, err)
			}
			continue
		}
		mm.logOnce(key, mm.writeStatus(ctx, mirror, view))
	}
	mm.deleteOrphans(ctx, list.Items, wanted)
}

func (mm *mirrorManager) imageID(ctx context.Context, image string) string {
	if id, ok := mm.images[image]; ok {
		return id
	}
	tagged, err := applyDefaultImageTag(image)
	if err != nil {
		return ""
	}
	img, err := mm.cri.ImageStatus(ctx, tagged)
	if err != nil || img == nil {
		return "" // asked again next time
	}
	mm.images[image] = imageRefOf(img)
	return mm.images[image]
}

func (mm *mirrorManager) writeStatus(ctx context.Context, mirror *v1.Pod, view staticPodView) error {
	for i := range view.Records {
		view.Records[i].ImageID = mm.imageID(ctx, view.Records[i].Image)
	}
	old, ok := mm.written[mirror.UID]
	if !ok {
		old = mirror.Status
	}
	status := staticPodStatus(view, mm.nodeIP, old, time.Now())
	if ok && apiequality.Semantic.DeepEqual(old, status) {
		return nil
	}
	updated := mirror.DeepCopy()
	updated.Status = mergeIntoAPIStatus(status, mirror.Status)
	if _, err := mm.client.CoreV1().Pods(mirror.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return nil // next round reads it again
		}
		return err
	}
	mm.written[mirror.UID] = status
	return nil
}

// deleteOrphans removes mirror pods on this node without a static pod.
func (mm *mirrorManager) deleteOrphans(ctx context.Context, pods []v1.Pod, wanted map[string]bool) {
	live := map[types.UID]bool{}
	for i := range pods {
		p := &pods[i]
		live[p.UID] = true
		if !isMirrorPod(p) || wanted[p.Namespace+"/"+p.Name] {
			continue
		}
		err := mm.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0), Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err == nil {
			klog.Infof("mirror pods: deleted orphaned %s/%s", p.Namespace, p.Name)
		} else if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			mm.logOnce(p.Namespace+"/"+p.Name, err)
		}
	}
	for uid := range mm.written {
		if !live[uid] {
			delete(mm.written, uid)
		}
	}
}
