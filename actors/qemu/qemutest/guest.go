// Package qemutest builds the tiny Linux guest labd's QEMU tests boot
// (testdata/guest/build.sh: a Debian kernel and a busybox initramfs whose
// init takes its address from the kernel command line, answers pings, and
// powers off on the ACPI power button).
package qemutest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Guest boot parameters, read by the guest's init.
const (
	// CommandLine is the kernel command line of a guest at addr (CIDR),
	// its console on the first serial port.
	CommandLine = "console=ttyS0 panic=-1 quiet labd.ip="
	// Ready is what the guest prints on its console once its address is
	// up, followed by the address.
	Ready = "labd-guest ready"
)

var buildMu sync.Mutex

// Guest builds the guest (cached across runs in $LABD_GUEST_CACHE or the
// user's cache directory) and returns its kernel and initrd.
func Guest(t testing.TB) (kernel, initrd string) {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	dir := os.Getenv("LABD_GUEST_CACHE")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("no cache directory for the guest (set LABD_GUEST_CACHE): %v", err)
		}
		dir = filepath.Join(cache, "labd-test-guest")
	}
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("qemutest: cannot locate the repository")
	}
	script := filepath.Join(filepath.Dir(self), "..", "..", "..", "testdata", "guest", "build.sh")
	start := time.Now()
	out, err := exec.Command(script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", script, dir, err, out)
	}
	t.Logf("guest build: %v (cached in %s)", time.Since(start).Round(time.Millisecond), dir)
	return filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
}
