package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// allowedImports is DESIGN.md's import graph: which labd packages each
// labd package may import (tests aside). Imports flow one way,
// cmd → http/api → actors → {replay → events, nio}; events and nio import
// nothing of labd. A package missing here fails the test: place it.
var allowedImports = map[string][]string{
	"labd/events":                  nil,
	"labd/events/eventstest":       {"labd/events"},
	"labd/events/jetstream":        {"labd/events"},
	"labd/events/jetstream/jstest": {"labd/events/jetstream"},
	"labd/nio":                     nil,
	"labd/nio/pcap":                nil,
	"labd/nio/niotest":             nil,
	"labd/actors/console":          nil,
	// The driver contract, and the kinds implementing it: they know the
	// data plane, and nothing of events or of each other.
	"labd/actors/kind":          {"labd/nio"},
	"labd/actors/vpcs":          {"labd/actors/kind"},
	"labd/actors/qemu":          {"labd/actors/kind", "labd/actors/qemu/qmp"},
	"labd/actors/qemu/qmp":      nil,
	"labd/actors/qemu/qemutest": nil,
	"labd/actors/ethswitch":     {"labd/actors/kind", "labd/nio"},
	"labd/actors/hub":           {"labd/actors/kind", "labd/nio"},
	"labd/actors/cloud":         {"labd/actors/kind", "labd/host", "labd/nio"},
	"labd/host":                 nil,
	"labd/replay":               {"labd/events"},
	"labd/actors": {"labd/events", "labd/replay", "labd/nio", "labd/nio/pcap", "labd/actors/console", "labd/actors/kind",
		"labd/actors/vpcs", "labd/actors/qemu", "labd/actors/ethswitch", "labd/actors/hub", "labd/actors/cloud"},
	"labd/actors/actorstest": {"labd/actors"},
	"labd/http/access":       nil,
	"labd/http/notify":       {"labd/events", "labd/replay"},
	"labd/http/api": {"labd/actors", "labd/actors/kind", "labd/actors/vpcs", "labd/actors/qemu", "labd/actors/ethswitch",
		"labd/actors/hub", "labd/actors/cloud", "labd/http/access", "labd/http/notify", "labd/events",
		"labd/replay", "labd/nio", "labd/nio/pcap", "labd/host"},
	// The VM dialects, over the lifecycle, with what they share.
	"labd/http/dialect": {"labd/actors", "labd/replay"},
	"labd/http/nova":    {"labd/actors", "labd/actors/qemu", "labd/http/access", "labd/http/dialect", "labd/replay"},
	"labd/http/danube":  {"labd/actors", "labd/actors/qemu", "labd/http/access", "labd/http/dialect", "labd/replay"},
	"labd/http/e24":     {"labd/actors", "labd/actors/qemu", "labd/http/access", "labd/http/dialect", "labd/replay"},
	// The dialects' test harness: labd's actors on real parts.
	"labd/http/dialecttest": {"labd/actors", "labd/actors/actorstest", "labd/actors/qemu", "labd/events/jetstream/jstest",
		"labd/nio", "labd/replay"},
	"labd/cmd/labd": {"*"},
}

func TestImportsFlowOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "labd/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		allowed, known := allowedImports[pkg]
		if !known {
			t.Errorf("package %s is not in allowedImports: decide where it sits in the import graph", pkg)
			continue
		}
		for _, imp := range imports {
			if !strings.HasPrefix(imp, "labd/") || slices.Contains(allowed, "*") {
				continue
			}
			if !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s: not allowed by the import graph", pkg, imp)
			}
		}
	}
}
