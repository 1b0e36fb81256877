package main

import (
	"errors"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// fakeObjects is an objectGetter over maps.
type fakeObjects struct {
	configMaps map[string]*v1.ConfigMap
	secrets    map[string]*v1.Secret
	err        error
}

func (f *fakeObjects) ConfigMap(ns, name string) (*v1.ConfigMap, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.configMaps[ns+"/"+name], nil
}

func (f *fakeObjects) Secret(ns, name string) (*v1.Secret, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.secrets[ns+"/"+name], nil
}

func newFakeObjects() *fakeObjects {
	return &fakeObjects{
		configMaps: map[string]*v1.ConfigMap{"ns/cfg": {Data: map[string]string{"k": "v"}}},
		secrets:    map[string]*v1.Secret{"ns/sec": {Data: map[string][]byte{"p": []byte("x")}}},
	}
}

func TestVolumeSetUpError(t *testing.T) {
	vol := func(v v1.Volume) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}, Spec: v1.PodSpec{Volumes: []v1.Volume{v}}}
	}
	cm := func(name string, opt *bool, items ...string) v1.VolumeSource {
		s := &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: name}, Optional: opt}
		for _, it := range items {
			s.Items = append(s.Items, v1.KeyToPath{Key: it, Path: it})
		}
		return v1.VolumeSource{ConfigMap: s}
	}
	cases := []struct {
		name string
		pod  *v1.Pod
		want string
	}{
		{"present", vol(v1.Volume{Name: "c", VolumeSource: cm("cfg", nil)}), ""},
		{"missing configmap", vol(v1.Volume{Name: "c", VolumeSource: cm("nope", nil)}),
			`MountVolume.SetUp failed for volume "c" : configmap "nope" not found`},
		{"optional missing", vol(v1.Volume{Name: "c", VolumeSource: cm("nope", ptr.To(true))}), ""},
		{"missing key", vol(v1.Volume{Name: "c", VolumeSource: cm("cfg", nil, "other")}),
			`MountVolume.SetUp failed for volume "c" : configmap references non-existent config key: other`},
		{"missing secret", vol(v1.Volume{Name: "s", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "nope"}}}),
			`MountVolume.SetUp failed for volume "s" : secret "nope" not found`},
		{"projected", vol(v1.Volume{Name: "p", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
			{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "gone"}}}}}}}),
			`MountVolume.SetUp failed for volume "p" : secret "gone" not found`},
		{"hostPath ignored", vol(v1.Volume{Name: "h", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: "/x"}}}), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := volumeSetUpError(tc.pod, newFakeObjects()); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	broken := &fakeObjects{err: errors.New("forbidden")}
	if got := volumeSetUpError(vol(v1.Volume{Name: "c", VolumeSource: cm("cfg", nil)}), broken); got != `MountVolume.SetUp failed for volume "c" : forbidden` {
		t.Errorf("API errors are reported: %q", got)
	}
}

func TestContainerConfigError(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}}
	cmKey := func(name, key string, opt *bool) v1.EnvVar {
		return v1.EnvVar{Name: "E", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{
			LocalObjectReference: v1.LocalObjectReference{Name: name}, Key: key, Optional: opt}}}
	}
	secKey := func(name, key string) v1.EnvVar {
		return v1.EnvVar{Name: "E", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{
			LocalObjectReference: v1.LocalObjectReference{Name: name}, Key: key}}}
	}
	cases := []struct {
		name string
		c    v1.Container
		want string
	}{
		{"literal", v1.Container{Env: []v1.EnvVar{{Name: "A", Value: "b"}}}, ""},
		{"configmap key ok", v1.Container{Env: []v1.EnvVar{cmKey("cfg", "k", nil)}}, ""},
		{"missing configmap", v1.Container{Env: []v1.EnvVar{cmKey("nope", "k", nil)}}, `configmap "nope" not found`},
		{"missing key", v1.Container{Env: []v1.EnvVar{cmKey("cfg", "x", nil)}}, "couldn't find key x in ConfigMap ns/cfg"},
		{"optional key", v1.Container{Env: []v1.EnvVar{cmKey("cfg", "x", ptr.To(true))}}, ""},
		{"optional configmap", v1.Container{Env: []v1.EnvVar{cmKey("nope", "x", ptr.To(true))}}, ""},
		{"missing secret", v1.Container{Env: []v1.EnvVar{secKey("nope", "p")}}, `secret "nope" not found`},
		{"missing secret key", v1.Container{Env: []v1.EnvVar{secKey("sec", "q")}}, "couldn't find key q in Secret ns/sec"},
		{"envFrom configmap", v1.Container{EnvFrom: []v1.EnvFromSource{{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "nope"}}}}}, `configmap "nope" not found`},
		{"envFrom secret optional", v1.Container{EnvFrom: []v1.EnvFromSource{{SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "nope"}, Optional: ptr.To(true)}}}}, ""},
		{"envFrom first", v1.Container{EnvFrom: []v1.EnvFromSource{{SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "s1"}}}},
			Env: []v1.EnvVar{cmKey("nope", "k", nil)}}, `secret "s1" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := containerConfigError(pod, &tc.c, newFakeObjects()); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
