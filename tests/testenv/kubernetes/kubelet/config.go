package main

// Configuration: flags (optional overrides for local runs), the KubeletConfiguration file
// kubeadm writes (/var/lib/kubelet/config.yaml, cmd/kubeadm/app/componentconfigs/kubelet.go)
// and kubeadm's per-node flags (/var/lib/kubelet/kubeadm-flags.env,
// cmd/kubeadm/app/phases/kubelet/flags.go).

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"
)

type options struct {
	Kubeconfig      string
	Config          string
	RootDir         string
	PodManifestPath string
	NodeName        string
	NodeIP          string
	LogDir          string
	CRISocket       string
	HealthzPort     int
	HealthzAddress  string
	Port            int
	MaxPods         int
	NodeLabels      map[string]string
	ProviderID      string

	set map[string]bool // flags given on the command line
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("kubelet", flag.ContinueOnError)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "/etc/kubernetes/kubelet.conf", "kubeconfig of the node (kubeadm writes it)")
	fs.StringVar(&o.Config, "config", "/var/lib/kubelet/config.yaml", "KubeletConfiguration file (kubeadm writes it)")
	fs.StringVar(&o.RootDir, "root-dir", "/var/lib/kubelet", "kubelet root directory (kubeadm-flags.env is read from it)")
	fs.StringVar(&o.PodManifestPath, "pod-manifest-path", "", "static pod directory (default: staticPodPath of the config, else /etc/kubernetes/manifests)")
	fs.StringVar(&o.NodeName, "node-name", "", "node name (default: --hostname-override of kubeadm-flags.env, else the host name)")
	fs.StringVar(&o.NodeIP, "node-ip", "", "node InternalIP (default: --node-ip of kubeadm-flags.env, else the first non-loopback IPv4)")
	fs.StringVar(&o.LogDir, "log-dir", "/var/log/pods", "pod log directory")
	fs.StringVar(&o.CRISocket, "cri-socket", "unix:///run/containerd/containerd.sock", "CRI endpoint (containerd)")
	fs.IntVar(&o.HealthzPort, "healthz-port", 10248, "healthz port on 127.0.0.1")
	fs.IntVar(&o.Port, "port", 10250, "kubelet API (HTTPS) port")
	fs.IntVar(&o.MaxPods, "max-pods", 110, "pods capacity")
	klog.InitFlags(fs) // --v and the other logging flags
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	o.HealthzAddress = "127.0.0.1"
	return o, nil
}

// kubeletConfigFile holds the KubeletConfiguration fields the simulation uses.
type kubeletConfigFile struct {
	StaticPodPath            string `json:"staticPodPath"`
	HealthzBindAddress       string `json:"healthzBindAddress"`
	HealthzPort              *int32 `json:"healthzPort"`
	Port                     *int32 `json:"port"`
	MaxPods                  int32  `json:"maxPods"`
	PodLogsDir               string `json:"podLogsDir"`
	ContainerRuntimeEndpoint string `json:"containerRuntimeEndpoint"`
}

// applyConfigFile merges config.yaml (and the instance-config.yaml kubeadm writes next to it)
// under the flags given on the command line.
func (o *options) applyConfigFile() error {
	var cfg kubeletConfigFile
	data, err := os.ReadFile(o.Config)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", o.Config, err)
	}
	instance := filepath.Join(filepath.Dir(o.Config), "instance-config.yaml")
	if data, err := os.ReadFile(instance); err == nil {
		var inst kubeletConfigFile
		if err := yaml.Unmarshal(data, &inst); err == nil && inst.ContainerRuntimeEndpoint != "" {
			cfg.ContainerRuntimeEndpoint = inst.ContainerRuntimeEndpoint
		}
	}
	if !o.set["pod-manifest-path"] {
		o.PodManifestPath = cfg.StaticPodPath
		if o.PodManifestPath == "" {
			o.PodManifestPath = "/etc/kubernetes/manifests"
		}
	}
	if !o.set["healthz-port"] && cfg.HealthzPort != nil && *cfg.HealthzPort > 0 {
		o.HealthzPort = int(*cfg.HealthzPort)
	}
	if cfg.HealthzBindAddress != "" {
		o.HealthzAddress = cfg.HealthzBindAddress
	}
	if !o.set["port"] && cfg.Port != nil && *cfg.Port > 0 {
		o.Port = int(*cfg.Port)
	}
	if !o.set["max-pods"] && cfg.MaxPods > 0 {
		o.MaxPods = int(cfg.MaxPods)
	}
	if !o.set["log-dir"] && cfg.PodLogsDir != "" {
		o.LogDir = cfg.PodLogsDir
	}
	if !o.set["cri-socket"] && cfg.ContainerRuntimeEndpoint != "" {
		o.CRISocket = cfg.ContainerRuntimeEndpoint
	}
	return nil
}

// kubeadmFlags parses KUBELET_KUBEADM_ARGS="--a=b --c d ..." from kubeadm-flags.env.
func kubeadmFlags(content string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "KUBELET_KUBEADM_ARGS=") {
			continue
		}
		value := strings.TrimPrefix(line, "KUBELET_KUBEADM_ARGS=")
		value = strings.Trim(value, `"'`)
		fields := strings.Fields(value)
		for i := 0; i < len(fields); i++ {
			f := fields[i]
			if !strings.HasPrefix(f, "--") {
				continue
			}
			f = strings.TrimPrefix(f, "--")
			if k, v, ok := strings.Cut(f, "="); ok {
				out[k] = strings.Trim(v, `"'`)
			} else if i+1 < len(fields) && !strings.HasPrefix(fields[i+1], "--") {
				out[f] = strings.Trim(fields[i+1], `"'`)
				i++
			} else {
				out[f] = "true"
			}
		}
	}
	return out
}

// parseLabels reads "k=v,k2=v2" (the kubelet's --node-labels).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

// applyKubeadmFlags merges kubeadm-flags.env under the command line flags, then fills
// the node name and IP.
func (o *options) applyKubeadmFlags() {
	flags := map[string]string{}
	if data, err := os.ReadFile(filepath.Join(o.RootDir, "kubeadm-flags.env")); err == nil {
		flags = kubeadmFlags(string(data))
	}
	if !o.set["node-ip"] && flags["node-ip"] != "" {
		// dual-stack "v4,v6": the first one is the primary
		o.NodeIP = strings.Split(flags["node-ip"], ",")[0]
	}
	if !o.set["node-name"] && flags["hostname-override"] != "" {
		o.NodeName = flags["hostname-override"]
	}
	if !o.set["cri-socket"] && flags["container-runtime-endpoint"] != "" {
		o.CRISocket = flags["container-runtime-endpoint"]
	}
	o.NodeLabels = parseLabels(flags["node-labels"])
	o.ProviderID = flags["provider-id"]
	if o.NodeName == "" {
		if h, err := os.Hostname(); err == nil {
			o.NodeName = h
		}
	}
	// The kubelet lowercases the node name (pkg/util/node GetHostname).
	o.NodeName = strings.ToLower(strings.TrimSpace(o.NodeName))
	if o.NodeIP == "" {
		o.NodeIP = firstIPv4()
	}
}

// firstIPv4 is the first non-loopback IPv4 address of the host's interfaces.
func firstIPv4() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				return ipn.IP.String()
			}
		}
	}
	return ""
}
