// Command kubelet is the simulated kubelet of kindling's test kind node: everything else in
// the node is real (kind, kubeadm, etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, containerd, crictl). It is installed as /usr/bin/kubelet, started by the
// node's entrypoint at boot with no arguments, and waits for the files `kubeadm init`
// writes (/var/lib/kubelet/config.yaml, /etc/kubernetes/kubelet.conf).
//
// Kubelet behaviours imitated, with the kubernetes/kubernetes source each follows (v1.36.3,
// pkg/kubelet/... unless said otherwise):
//
//   - healthz on 127.0.0.1:10248 once the config is read (kubelet.go, server/server.go
//     healthz; kubeadm's wait-control-plane polls it) - main.go
//   - config: KubeletConfiguration staticPodPath/healthz/port/maxPods/podLogsDir/
//     containerRuntimeEndpoint, kubeadm-flags.env --node-ip/--node-labels/--provider-id/
//     --hostname-override (cmd/kubeadm/app/phases/kubelet/flags.go) - config.go
//   - static pods from the manifest directory every 2 s, added/changed/removed
//     (config/file.go); UID = FNV-128 hash of the manifest, name <pod>-<node>, namespace
//     "default" when empty, config.hash/config.source/config.seen annotations, NoExecute
//     toleration (config/common.go applyDefaults); containers run as host processes in
//     their own process groups, restarted with back-off; logs in the kubelet's layout and
//     the CRI format (kuberuntime/helpers.go BuildContainerLogsDirectory,
//     kuberuntime/logs/logs.go) - staticpods.go, logfile.go
//   - mirror pods: config.mirror annotation, owner reference to the Node, recreated when
//     stale or deleted, orphans deleted, status of the static pod written on them
//     (pod/mirror_client.go, kubelet.go syncPod, status/status_manager.go) - mirror.go
//   - node registration with kubernetes.io/hostname, os, arch (and beta.) labels plus
//     --node-labels, providerID, controller-managed-attach-detach annotation; re-register
//     when deleted (kubelet_node_status.go initialNode, registerWithAPIServer) - node.go
//   - node status: InternalIP/Hostname addresses, capacity = allocatable (cpu, memory,
//     pods, ephemeral-storage, hugepages), nodeInfo (kubeletVersion v1.36.3,
//     containerRuntimeVersion from CRI Version), daemonEndpoints port 10250, conditions
//     MemoryPressure/DiskPressure/PIDPressure False and Ready True last, images from CRI
//     ListImages (biggest first, at most 50, at most 5 names each), patched on the status
//     subresource every 10 s (nodestatus/setters.go, kubelet_node_status.go
//     tryUpdateNodeStatus, component-helpers node/util PatchNodeStatus) - node.go, images.go
//   - node Lease kube-node-lease/<node>, 40 s, renewed every 10 s, owned by the Node
//     (kubelet.go + component-helpers apimachinery/lease, util/nodelease.go) - node.go
//   - node events Starting "Starting kubelet.", NodeHasSufficientMemory,
//     NodeHasNoDiskPressure, NodeHasSufficientPID, NodeReady "Node N status is now: X"
//     (kubelet_node_status.go recordNodeStatusEvent) - node.go
//   - pods bound to the node through an informer with spec.nodeName=<node>
//     (config/apiserver.go), one worker per pod (pod_workers.go) - pods.go, worker.go
//   - volume SetUp of configMap/secret/projected volumes: FailedMount
//     `MountVolume.SetUp failed for volume "V" : configmap "X" not found`, containers
//     waiting ContainerCreating (or PodInitializing), retried (volumemanager,
//     pkg/volume/configmap, pkg/volume/secret) - volumes.go
//   - container environment: CreateContainerConfigError `configmap "X" not found`,
//     `couldn't find key K in ConfigMap NS/X`, `secret "X" not found`, `couldn't find key K
//     in Secret NS/X`, Warning Failed "Error: MSG" (kubelet_pods.go
//     makeEnvironmentVariables, kuberuntime/kuberuntime_container.go startContainer) -
//     volumes.go, worker.go
//   - images through the CRI ImageService of the node's containerd: pull policy,
//     ErrImageNeverPull, Pulled "already present on machine and can be accessed by the
//     pod", Pulling, real PullImage, "Successfully pulled image ... in D (D including
//     waiting). Image size: N bytes.", ErrImagePull + Failed events, ImagePullBackOff
//     `Back-off pulling image "I": ErrImagePull: ERR` + BackOff event, back-off 10 s
//     doubling to 300 s, InvalidImageName (images/image_manager.go, images/types.go,
//     events/event.go) - worker.go, images.go
//   - container start: events Created "Container created" and Started "Container started"
//     (the v1.36.3 wording of kuberuntime/kuberuntime_container.go startContainer),
//     containerd://<64 hex> IDs, imageID = repo digest else image ID, restartCount,
//     lastState (kubelet_pods.go convertToAPIContainerStatuses)
//   - init containers one at a time then the containers; PodInitializing; completed init
//     containers ready; restartable (sidecar) init containers (kuberuntime_manager.go
//     computePodActions, prober/prober_manager.go)
//   - readiness/startup: started after the startup probe's initialDelaySeconds, ready
//     after the readiness probe's initialDelaySeconds (prober/worker.go)
//   - phase (kubelet_pods.go getPhase, ContainerRestartRules on), terminal phases never
//     revert; QoS class (pkg/apis/core/v1/helper/qos); conditions PodReadyToStartContainers,
//     Initialized, Ready, ContainersReady, PodScheduled with their reasons and messages,
//     transition times kept (status/generate.go, status/status_manager.go); pod IPs
//     from node.spec.podCIDR (host-local IPAM's round robin), host network pods get the
//     node IP (kubelet_pods.go generateAPIPodStatus) - status.go, ipam.go
//   - crash loop: exit, then CrashLoopBackOff `back-off 10s restarting failed
//     container=C pod=P_NS(UID)` and Warning BackOff `Back-off restarting failed container C
//     in pod P_NS(UID)`, back-off 0, 10 s, 20 s ... 300 s (kuberuntime_manager.go
//     doBackOff, client-go util/flowcontrol backoff) - worker.go, faults.go
//   - deletion: Normal Killing "Stopping container C", containers terminated (exit 0
//     Completed; never-started ones ContainerStatusUnknown 137 as TerminatePod does), pod
//     deleted with grace period 0 and a UID precondition (kuberuntime_container.go
//     killContainer, status/status_manager.go TerminatePod, syncPod) - worker.go, pods.go
//   - events through client-go's recorder, source component "kubelet", host <node>,
//     involved object the pod with fieldPath spec.containers{C}/spec.initContainers{C}
//     (cmd/kubelet/app/server.go, container/ref.go) - events.go
//   - kubelet API on :10250, HTTPS with a self-signed certificate, any client:
//     GET /containerLogs/{ns}/{pod}/{container} with tailLines/tail, previous, timestamps,
//     follow, limitBytes, sinceSeconds, sinceTime; the kubelet's errors (pod not found 404,
//     container not found 404, `container "C" in pod "P" is waiting to start: REASON` 400,
//     `previous terminated container "C" in pod "P" not found` 400), GET /healthz
//     (server/server.go getContainerLogs, kubelet_pods.go validateContainerLogStatus) -
//     logs.go
//
// Not imitated: containers of ordinary pods do not run (no sandboxes, no networking, no
// exec/attach/port-forward, no probes actually run, no volumes mounted), no resource
// accounting, eviction or image garbage collection, no pull secrets, no static pod init
// containers, no cgroup handling, no TLS bootstrap or certificate rotation.
//
// Fault injection and knobs, pod annotations only (set them on a workload's pod template):
//
//	kindling.test/fault: crashloop     every start of a container ends after run-seconds
//	                                   with exit code 1 (reason Error); restartCount grows;
//	                                   CrashLoopBackOff with back-off 10 s doubling to 300 s
//	kindling.test/fault: exit=N        run-to-completion pods (restartPolicy Never/OnFailure)
//	                                   end with exit code N (Never: phase Failed, or Succeeded
//	                                   for 0; OnFailure restarts non-zero like a crash loop);
//	                                   restartPolicy Always: a crash loop with that code
//	kindling.test/fault: never-ready   running, never ready; Warning Unhealthy "Readiness
//	                                   probe failed: ..." every periodSeconds (default 10)
//	kindling.test/run-seconds: F       how long a container runs before it exits, when it
//	                                   exits (default 1; init containers 0.5)
//	kindling.test/backoff-seconds: F   the first crash-loop back-off (default 10)
//	kindling.test/log: TEXT            the lines every container of the pod "prints" (what
//	                                   `kubectl logs` returns); default: a few lines naming
//	                                   the container, its image and its start time
//
// Faults apply to regular containers; init containers always complete with 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const (
	configPollPeriod = 200 * time.Millisecond
	apiRetryPeriod   = 500 * time.Millisecond
	shutdownTimeout  = 20 * time.Second
)

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	klog.Infof("simulated kubelet %s starting (pid %d)", kubeletVersion, os.Getpid())
	if !waitForFiles(ctx, opts.Config, opts.Kubeconfig) {
		klog.Info("stopped before the configuration appeared")
		return
	}
	for {
		if err = opts.applyConfigFile(); err == nil {
			break
		}
		klog.Warningf("config: %v (retrying)", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(configPollPeriod):
		}
	}
	opts.applyKubeadmFlags()
	klog.Infof("node %q, InternalIP %q, static pods %s, CRI %s, pod logs %s",
		opts.NodeName, opts.NodeIP, opts.PodManifestPath, opts.CRISocket, opts.LogDir)

	go serveHealthz(ctx, opts.HealthzAddress, opts.HealthzPort)
	os.Exit(run(ctx, opts))
}

// waitForFiles polls until every path exists (kubeadm init writes them), or ctx ends.
func waitForFiles(ctx context.Context, paths ...string) bool {
	logged := false
	for {
		missing := ""
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				missing = p
				break
			}
		}
		if missing == "" {
			return true
		}
		if !logged {
			klog.Infof("waiting for %s (kubeadm init writes it)", missing)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(configPollPeriod):
		}
	}
}

func serveHealthz(ctx context.Context, address string, port int) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	addr := net.JoinHostPort(address, strconv.Itoa(port))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	for ctx.Err() == nil {
		err := srv.ListenAndServe()
		if errors.Is(err, http.ErrServerClosed) {
			return
		}
		klog.Warningf("healthz on %s: %v (retrying)", addr, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// run starts everything and waits for the end; the static pods' processes are stopped
// before it returns.
func run(ctx context.Context, opts *options) int {
	logs := newLogRegistry()
	static := newStaticPodManager(opts.PodManifestPath, opts.NodeName, opts.NodeIP, opts.LogDir, logs)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		static.Run(ctx)
	}()
	go serveKubeletAPI(ctx, opts.Port, opts.NodeName, []string{opts.NodeIP}, logs)

	cri, err := dialCRI(opts.CRISocket)
	if err != nil {
		klog.Errorf("%v", err)
		return finish(ctx, &wg, 1)
	}
	defer cri.Close()

	client := apiClient(ctx, opts.Kubeconfig)
	if client == nil {
		return finish(ctx, &wg, 0)
	}
	ev := newEvents(ctx, client, opts.NodeName)
	nodes := newNodeManager(client, cri, opts, ev)
	go nodes.Run(ctx)
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-nodes.Registered():
		}
		go newMirrorManager(client, nodes, static, cri, opts.NodeIP).Run(ctx)
		newPodManager(client, nodes, opts, cri, ev, logs).Run(ctx)
	}()
	return finish(ctx, &wg, 0)
}

func finish(ctx context.Context, wg *sync.WaitGroup, code int) int {
	<-ctx.Done()
	klog.Info("stopping: killing the static pods' processes")
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownTimeout):
		klog.Warning("static pods did not stop in time")
	}
	klog.Info("stopped")
	return code
}

// apiClient builds a client from the node's kubeconfig (client certificate of
// system:node:<node>), retrying while it cannot be read.
func apiClient(ctx context.Context, kubeconfig string) kubernetes.Interface {
	for {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err == nil {
			cfg.QPS, cfg.Burst = 50, 100
			cfg.UserAgent = rest.DefaultKubernetesUserAgent() + " kindling-simulated-kubelet/" + kubeletVersion
			cfg.Timeout = 30 * time.Second
			client, cerr := kubernetes.NewForConfig(cfg)
			if cerr == nil {
				return client
			}
			err = cerr
		}
		klog.Warningf("kubeconfig %s: %v (retrying)", kubeconfig, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(apiRetryPeriod):
		}
	}
}
