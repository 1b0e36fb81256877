package main

// The kubelet API subset the API server uses for `kubectl logs` (pkg/kubelet/server/server.go
// getContainerLogs): HTTPS on 0.0.0.0:10250 with a self-signed serving certificate (what a
// kubelet without serverTLSBootstrap does; the API server does not verify it unless
// --kubelet-certificate-authority is set, and kubeadm does not set it). Any client is
// accepted. Routes: GET /containerLogs/{namespace}/{pod}/{container}, GET /healthz; all else
// 404.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// logTarget is a pod as the log endpoint sees it: the container names of its spec, its
// current status, and the log file of each container instance by container ID.
type logTarget struct {
	PodName    string
	Containers []string
	Status     v1.PodStatus
	Paths      map[string]string
}

type logSource func() logTarget

// logRegistry maps namespace/name to the pod's log source (the kubelet's pod manager
// GetPodByName; a static pod is found by its mirror pod's name).
type logRegistry struct {
	mu      sync.Mutex
	sources map[string]map[types.UID]logSource
	order   map[string][]types.UID
}

func newLogRegistry() *logRegistry {
	return &logRegistry{sources: map[string]map[types.UID]logSource{}, order: map[string][]types.UID{}}
}

func (r *logRegistry) Register(namespace, name string, uid types.UID, src logSource) {
	key := namespace + "/" + name
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sources[key] == nil {
		r.sources[key] = map[types.UID]logSource{}
	}
	if _, ok := r.sources[key][uid]; !ok {
		r.order[key] = append(r.order[key], uid)
	}
	r.sources[key][uid] = src
}

func (r *logRegistry) Unregister(namespace, name string, uid types.UID) {
	key := namespace + "/" + name
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sources[key], uid)
	var keep []types.UID
	for _, u := range r.order[key] {
		if u != uid {
			keep = append(keep, u)
		}
	}
	r.order[key] = keep
	if len(r.sources[key]) == 0 {
		delete(r.sources, key)
		delete(r.order, key)
	}
}

// Lookup returns the newest pod of that name.
func (r *logRegistry) Lookup(namespace, name string) (logTarget, bool) {
	key := namespace + "/" + name
	r.mu.Lock()
	order := r.order[key]
	var src logSource
	if len(order) > 0 {
		src = r.sources[key][order[len(order)-1]]
	}
	r.mu.Unlock()
	if src == nil {
		return logTarget{}, false
	}
	return src(), true
}

// validateContainerLogStatus picks the container instance whose logs are wanted, with the
// kubelet's wording for the cases that have none (kubelet_pods.go validateContainerLogStatus).
func validateContainerLogStatus(podName string, status *v1.PodStatus, container string, previous bool) (string, error) {
	s, found := findStatus(status.ContainerStatuses, container)
	if !found {
		s, found = findStatus(status.InitContainerStatuses, container)
	}
	if !found {
		return "", fmt.Errorf("container %q in pod %q is not available", container, podName)
	}
	last := s.LastTerminationState
	waiting, running, terminated := s.State.Waiting, s.State.Running, s.State.Terminated
	switch {
	case previous:
		if last.Terminated == nil || last.Terminated.ContainerID == "" {
			return "", fmt.Errorf("previous terminated container %q in pod %q not found", container, podName)
		}
		return last.Terminated.ContainerID, nil
	case running != nil:
		return s.ContainerID, nil
	case terminated != nil:
		if terminated.ContainerID != "" {
			return terminated.ContainerID, nil
		}
		if last.Terminated != nil && last.Terminated.ContainerID != "" {
			return last.Terminated.ContainerID, nil
		}
		return "", fmt.Errorf("container %q in pod %q is terminated", container, podName)
	case last.Terminated != nil:
		if last.Terminated.ContainerID == "" {
			return "", fmt.Errorf("container %q in pod %q is terminated", container, podName)
		}
		return last.Terminated.ContainerID, nil
	case waiting != nil:
		switch waiting.Reason {
		case "ErrImagePull":
			return "", fmt.Errorf("container %q in pod %q is waiting to start: image can't be pulled", container, podName)
		case "ImagePullBackOff":
			return "", fmt.Errorf("container %q in pod %q is waiting to start: trying and failing to pull image", container, podName)
		default:
			return "", fmt.Errorf("container %q in pod %q is waiting to start: %v", container, podName, waiting.Reason)
		}
	default:
		return "", fmt.Errorf("container %q in pod %q is waiting to start - no logs yet", container, podName)
	}
}

// httpError carries the status code the kubelet answers with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// parseLogQuery decodes the PodLogOptions query parameters the API server forwards
// (server.go getContainerLogs; "tail" is the legacy spelling of tailLines).
func parseLogQuery(q url.Values, now time.Time) (logOptions, bool, bool, error) {
	var o logOptions
	bad := &httpError{http.StatusBadRequest, `{"message": "Unable to decode query."}`}
	invalid := &httpError{http.StatusUnprocessableEntity, `{"message": "Invalid request."}`}
	boolean := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, bad
		}
		return b, nil
	}
	integer := func(name string) (*int64, error) {
		v := q.Get(name)
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, bad
		}
		return &n, nil
	}
	if tail := q.Get("tail"); tail != "" {
		if tail == "all" {
			q.Del("tailLines")
		} else {
			q.Set("tailLines", tail)
		}
	}
	var err error
	previous, err := boolean("previous")
	if err != nil {
		return o, false, false, err
	}
	follow, err := boolean("follow")
	if err != nil {
		return o, false, false, err
	}
	if o.Timestamps, err = boolean("timestamps"); err != nil {
		return o, false, false, err
	}
	if o.TailLines, err = integer("tailLines"); err != nil {
		return o, false, false, err
	}
	if o.LimitBytes, err = integer("limitBytes"); err != nil {
		return o, false, false, err
	}
	since, err := integer("sinceSeconds")
	if err != nil {
		return o, false, false, err
	}
	if v := q.Get("sinceTime"); v != "" {
		t, perr := time.Parse(time.RFC3339, v)
		if perr != nil {
			return o, false, false, bad
		}
		o.SinceTime = &t
	}
	if (o.TailLines != nil && *o.TailLines < 0) || (o.LimitBytes != nil && *o.LimitBytes < 1) ||
		(since != nil && *since < 1) || (since != nil && o.SinceTime != nil) {
		return o, false, false, invalid
	}
	if since != nil {
		t := now.Add(-time.Duration(*since) * time.Second)
		o.SinceTime = &t
	}
	return o, previous, follow, nil
}

// containerLogs answers one request: the body, or an error with its status code.
func containerLogs(reg *logRegistry, namespace, pod, container string, q url.Values, now time.Time) ([]byte, error) {
	opts, previous, _, err := parseLogQuery(q, now)
	if err != nil {
		return nil, err
	}
	target, ok := reg.Lookup(namespace, pod)
	if !ok {
		return nil, &httpError{http.StatusNotFound, fmt.Sprintf("pod %q does not exist", pod)}
	}
	known := false
	for _, c := range target.Containers {
		known = known || c == container
	}
	if !known {
		return nil, &httpError{http.StatusNotFound, fmt.Sprintf("container %q not found in pod %q", container, pod)}
	}
	id, err := validateContainerLogStatus(target.PodName, &target.Status, container, previous)
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, err.Error()}
	}
	path := target.Paths[id]
	if path == "" {
		return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("failed to get container status %q: container not found", id)}
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return []byte{}, nil
		}
		return nil, &httpError{http.StatusInternalServerError, err.Error()}
	}
	defer f.Close()
	return renderLogs(parseCRILog(f), opts), nil
}

func newKubeletMux(reg *logRegistry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		body, err := containerLogs(reg, r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container"), r.URL.Query(), time.Now())
		if err != nil {
			code := http.StatusInternalServerError
			var he *httpError
			if errors.As(err, &he) {
				code = he.code
			}
			http.Error(w, err.Error(), code)
			return
		}
		// Follow is answered with what there is, then the stream ends.
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/", http.NotFound)
	return mux
}

// selfSignedCert makes the serving certificate a kubelet without a certificate file
// generates (client-go/util/cert GenerateSelfSignedCertKey: CN "<host>@<unix time>").
func selfSignedCert(nodeName string, ips []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s@%d", nodeName, now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{nodeName, "localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	for _, ip := range ips {
		if p := net.ParseIP(ip); p != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, p)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// serveKubeletAPI runs the HTTPS server until ctx ends; it retries the listen (the port may
// still be held by a kubelet that is exiting).
func serveKubeletAPI(ctx context.Context, port int, nodeName string, ips []string, reg *logRegistry) {
	cert, err := selfSignedCert(nodeName, ips)
	if err != nil {
		klog.Errorf("kubelet API: certificate: %v", err)
		return
	}
	srv := &http.Server{
		Handler:           newKubeletMux(reg),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12},
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(port))
	for ctx.Err() == nil {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			klog.Warningf("kubelet API: listen %s: %v (retrying)", addr, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		klog.Infof("kubelet API (container logs) on https://%s", addr)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.Errorf("kubelet API: %v", err)
		}
		return
	}
}
