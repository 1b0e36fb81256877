package main

// Pod IP allocation. A real node gets pod IPs from its CNI plugin (kind: kindnetd with the
// host-local IPAM plugin over node.spec.podCIDR, allocated round-robin from the first
// usable address, .1 being the bridge gateway); the simulated kubelet plays that part.

import (
	"fmt"
	"net/netip"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

const defaultPodCIDR = "10.244.0.0/24"

type ipPool struct {
	mu     sync.Mutex
	prefix netip.Prefix
	used   map[netip.Addr]types.UID
	owners map[types.UID]netip.Addr
	last   netip.Addr // the last address handed out (round robin, as host-local does)
}

func newIPPool(cidr string) (*ipPool, error) {
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR %q: %w", cidr, err)
	}
	prefix = prefix.Masked()
	if prefix.Addr().Is4() && prefix.Bits() > 30 || prefix.Addr().Is6() && prefix.Bits() > 126 {
		return nil, fmt.Errorf("pod CIDR %q is too small", cidr)
	}
	return &ipPool{prefix: prefix, used: map[netip.Addr]types.UID{}, owners: map[types.UID]netip.Addr{}}, nil
}

func (p *ipPool) CIDR() string { return p.prefix.String() }

// usable: not the network address, not the gateway (.1), not the IPv4 broadcast address.
func (p *ipPool) usable(a netip.Addr) bool {
	if !p.prefix.Contains(a) {
		return false
	}
	network := p.prefix.Addr()
	if a == network || a == network.Next() {
		return false
	}
	if a.Is4() {
		next := a.Next()
		if !next.IsValid() || !p.prefix.Contains(next) {
			return false // broadcast
		}
	}
	return true
}

// Allocate returns owner's address, handing out the next free one after the last
// allocation when owner has none.
func (p *ipPool) Allocate(owner types.UID) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.owners[owner]; ok {
		return a, nil
	}
	start := p.last
	if !start.IsValid() || !p.prefix.Contains(start) {
		start = p.prefix.Addr().Next() // the gateway: the first candidate is the one after it
	}
	a := start
	for {
		a = a.Next()
		if !a.IsValid() || !p.prefix.Contains(a) {
			a = p.prefix.Addr()
			continue
		}
		if p.usable(a) {
			if _, taken := p.used[a]; !taken {
				p.used[a], p.owners[owner], p.last = owner, a, a
				return a, nil
			}
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("no free pod IP left in %s", p.prefix)
		}
	}
}

// Reserve records an address already in use (pods running before a kubelet restart).
func (p *ipPool) Reserve(owner types.UID, ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil || !p.usable(a) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if other, taken := p.used[a]; taken && other != owner {
		return false
	}
	p.used[a], p.owners[owner] = owner, a
	return true
}

// Release frees owner's address (the sandbox is gone).
func (p *ipPool) Release(owner types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.owners[owner]; ok {
		delete(p.owners, owner)
		delete(p.used, a)
	}
}
