// CoreDNS with only the plugins kubeadm's default Corefile uses (the CoreDNSConfigMap
// template in k8s.io/kubernetes cmd/kubeadm/app/phases/addons/dns/manifests.go).
//
// This is CoreDNS's own way to build a custom plugin set without editing plugin.cfg
// and running go generate: a main package that sets dnsserver.Directives and imports
// the plugins, as coredns.go and core/plugin/zplugin.go do for the full set. The
// main package lives here, so this folder needs no tools.go.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics" // the "prometheus" directive
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The order in which plugins handle a query: CoreDNS's own order (plugin.cfg,
// core/dnsserver/zdirectives.go), restricted to the plugins above. forward and
// kubernetes import debug, dnstap, metadata and transfer, so `coredns -plugins`
// lists those too, but without a directive a Corefile cannot use them.
func init() {
	dnsserver.Directives = []string{
		"reload",
		"ready",
		"health",
		"prometheus",
		"errors",
		"loadbalance",
		"cache",
		"kubernetes",
		"loop",
		"forward",
	}
}

func main() {
	coremain.Run()
}
