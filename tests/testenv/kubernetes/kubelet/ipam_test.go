package main

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestIPPoolSequential(t *testing.T) {
	p, err := newIPPool("10.244.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 5; i++ {
		a, err := p.Allocate(types.UID(fmt.Sprint(i)))
		if err != nil || a.String() != fmt.Sprintf("10.244.0.%d", i) {
			t.Fatalf("allocation %d: %v %v", i, a, err)
		}
	}
	if a, _ := p.Allocate("2"); a.String() != "10.244.0.2" {
		t.Errorf("an owner keeps its address: %v", a)
	}
	p.Release("3")
	if a, _ := p.Allocate("new"); a.String() != "10.244.0.6" {
		t.Errorf("round robin continues after the last one (host-local): %v", a)
	}
}

func TestIPPoolWrapsAndFills(t *testing.T) {
	p, err := newIPPool("10.0.0.0/29") // .2 .. .6 usable
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		a, err := p.Allocate(types.UID(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		s := a.String()
		if s == "10.0.0.0" || s == "10.0.0.1" || s == "10.0.0.7" || seen[s] {
			t.Fatalf("bad or duplicate address %s", s)
		}
		seen[s] = true
	}
	if _, err := p.Allocate("full"); err == nil {
		t.Fatal("a full pool must fail")
	}
	p.Release("1") // 10.0.0.3
	if a, err := p.Allocate("again"); err != nil || a.String() != "10.0.0.3" {
		t.Errorf("wrap around to the freed address: %v %v", a, err)
	}
}

func TestIPPoolReserve(t *testing.T) {
	p, _ := newIPPool("10.244.1.0/24")
	if !p.Reserve("old", "10.244.1.2") {
		t.Fatal("reserve")
	}
	if p.Reserve("other", "10.244.1.2") {
		t.Error("an address is reserved once")
	}
	if p.Reserve("x", "10.9.9.9") || p.Reserve("x", "10.244.1.1") {
		t.Error("outside the pool or the gateway cannot be reserved")
	}
	if a, _ := p.Allocate("new"); a.String() != "10.244.1.3" {
		t.Errorf("reserved addresses are skipped: %v", a)
	}
	if _, err := newIPPool("bogus"); err == nil {
		t.Error("a bad CIDR is an error")
	}
	if p2, _ := newIPPool("10.244.0.7/24"); p2.CIDR() != "10.244.0.0/24" {
		t.Errorf("the prefix is masked: %s", p2.CIDR())
	}
}
