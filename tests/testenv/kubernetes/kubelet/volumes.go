package main

// ConfigMap and Secret references of a pod: the volume manager's SetUp of configMap, secret
// and projected volumes (pkg/volume/configmap, pkg/volume/secret, pkg/volume/projected;
// event FailedMount from pkg/kubelet/volumemanager) and the container environment
// (kubelet_pods.go makeEnvironmentVariables -> CreateContainerConfigError). The kubelet's
// configmap/secret managers answer a missing object with NotFound of resource "configmap"
// or "secret" (pkg/kubelet/util/manager), hence `configmap "x" not found`.

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// objectGetter reads ConfigMaps and Secrets; a missing object is (nil, nil).
type objectGetter interface {
	ConfigMap(namespace, name string) (*v1.ConfigMap, error)
	Secret(namespace, name string) (*v1.Secret, error)
}

// apiGetter reads from the API server, each object once per check.
type apiGetter struct {
	ctx        context.Context
	client     kubernetes.Interface
	configMaps map[string]*v1.ConfigMap
	secrets    map[string]*v1.Secret
}

func newAPIGetter(ctx context.Context, client kubernetes.Interface) *apiGetter {
	return &apiGetter{ctx: ctx, client: client, configMaps: map[string]*v1.ConfigMap{}, secrets: map[string]*v1.Secret{}}
}

func (g *apiGetter) ConfigMap(namespace, name string) (*v1.ConfigMap, error) {
	key := namespace + "/" + name
	if cm, ok := g.configMaps[key]; ok {
		return cm, nil
	}
	cm, err := g.client.CoreV1().ConfigMaps(namespace).Get(g.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	g.configMaps[key] = cm
	return cm, nil
}

func (g *apiGetter) Secret(namespace, name string) (*v1.Secret, error) {
	key := namespace + "/" + name
	if s, ok := g.secrets[key]; ok {
		return s, nil
	}
	s, err := g.client.CoreV1().Secrets(namespace).Get(g.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	g.secrets[key] = s
	return s, nil
}

func optional(b *bool) bool { return b != nil && *b }

// volumeSetUpError returns the FailedMount message of the first volume that cannot be set
// up, or "" when all can.
func volumeSetUpError(pod *v1.Pod, g objectGetter) string {
	fail := func(volume, msg string) string {
		return fmt.Sprintf("MountVolume.SetUp failed for volume %q : %s", volume, msg)
	}
	checkConfigMap := func(name string, opt *bool, items []v1.KeyToPath) (string, bool) {
		cm, err := g.ConfigMap(pod.Namespace, name)
		if err != nil {
			return err.Error(), false
		}
		if cm == nil {
			if optional(opt) {
				return "", true
			}
			return fmt.Sprintf("configmap %q not found", name), false
		}
		for _, it := range items {
			_, inData := cm.Data[it.Key]
			_, inBinary := cm.BinaryData[it.Key]
			if !inData && !inBinary && !optional(opt) {
				return fmt.Sprintf("configmap references non-existent config key: %s", it.Key), false
			}
		}
		return "", true
	}
	checkSecret := func(name string, opt *bool, items []v1.KeyToPath) (string, bool) {
		s, err := g.Secret(pod.Namespace, name)
		if err != nil {
			return err.Error(), false
		}
		if s == nil {
			if optional(opt) {
				return "", true
			}
			return fmt.Sprintf("secret %q not found", name), false
		}
		for _, it := range items {
			if _, ok := s.Data[it.Key]; !ok && !optional(opt) {
				return fmt.Sprintf("references non-existent secret key: %s", it.Key), false
			}
		}
		return "", true
	}
	for _, vol := range pod.Spec.Volumes {
		switch {
		case vol.ConfigMap != nil:
			if msg, ok := checkConfigMap(vol.ConfigMap.Name, vol.ConfigMap.Optional, vol.ConfigMap.Items); !ok {
				return fail(vol.Name, msg)
			}
		case vol.Secret != nil:
			if msg, ok := checkSecret(vol.Secret.SecretName, vol.Secret.Optional, vol.Secret.Items); !ok {
				return fail(vol.Name, msg)
			}
		case vol.Projected != nil:
			for _, src := range vol.Projected.Sources {
				if src.ConfigMap != nil {
					if msg, ok := checkConfigMap(src.ConfigMap.Name, src.ConfigMap.Optional, src.ConfigMap.Items); !ok {
						return fail(vol.Name, msg)
					}
				}
				if src.Secret != nil {
					if msg, ok := checkSecret(src.Secret.Name, src.Secret.Optional, src.Secret.Items); !ok {
						return fail(vol.Name, msg)
					}
				}
			}
		}
	}
	return ""
}

// containerConfigError returns the CreateContainerConfigError message for a container
// whose environment cannot be built, or "" (kubelet_pods.go makeEnvironmentVariables:
// envFrom first, then env).
func containerConfigError(pod *v1.Pod, c *v1.Container, g objectGetter) string {
	ns := pod.Namespace
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := g.ConfigMap(ns, from.ConfigMapRef.Name)
			if err != nil {
				return err.Error()
			}
			if cm == nil && !optional(from.ConfigMapRef.Optional) {
				return fmt.Sprintf("configmap %q not found", from.ConfigMapRef.Name)
			}
		case from.SecretRef != nil:
			s, err := g.Secret(ns, from.SecretRef.Name)
			if err != nil {
				return err.Error()
			}
			if s == nil && !optional(from.SecretRef.Optional) {
				return fmt.Sprintf("secret %q not found", from.SecretRef.Name)
			}
		}
	}
	for _, env := range c.Env {
		if env.ValueFrom == nil {
			continue
		}
		switch {
		case env.ValueFrom.ConfigMapKeyRef != nil:
			ref := env.ValueFrom.ConfigMapKeyRef
			cm, err := g.ConfigMap(ns, ref.Name)
			if err != nil {
				return err.Error()
			}
			if cm == nil {
				if optional(ref.Optional) {
					continue
				}
				return fmt.Sprintf("configmap %q not found", ref.Name)
			}
			if _, ok := cm.Data[ref.Key]; !ok && !optional(ref.Optional) {
				return fmt.Sprintf("couldn't find key %v in ConfigMap %v/%v", ref.Key, ns, ref.Name)
			}
		case env.ValueFrom.SecretKeyRef != nil:
			ref := env.ValueFrom.SecretKeyRef
			s, err := g.Secret(ns, ref.Name)
			if err != nil {
				return err.Error()
			}
			if s == nil {
				if optional(ref.Optional) {
					continue
				}
				return fmt.Sprintf("secret %q not found", ref.Name)
			}
			if _, ok := s.Data[ref.Key]; !ok && !optional(ref.Optional) {
				return fmt.Sprintf("couldn't find key %v in Secret %v/%v", ref.Key, ns, ref.Name)
			}
		}
	}
	return ""
}
