// Package actorstest helps tests run node processes the way labd does:
// as the unprivileged node user when the tests run as root, in
// directories that user can reach.
package actorstest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"labd/actors"
)

// NodeUser returns the account node processes of a test run as: nil (the
// test's own account) unless the test runs as root, and then
// actors.DefaultNodeUser, which must exist (make deps creates it), exactly
// as labd serve requires. The dirs (temporary directories the test made)
// are made reachable to it.
func NodeUser(t testing.TB, dirs ...string) *actors.NodeUser {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := actors.LookupNodeUser(actors.DefaultNodeUser)
	if err != nil {
		t.Fatalf("the tests run node processes as %s, as labd does when root (make deps creates the account): %v", actors.DefaultNodeUser, err)
	}
	for _, d := range dirs {
		Reachable(t, d)
	}
	return u
}

// Reachable opens the way to dir, a directory under the temporary
// directory, to other accounts: testing's temporary directories are
// created mode 0700. Directories outside the temporary directory are left
// alone (labd's own check reports them).
func Reachable(t testing.TB, dir string) {
	t.Helper()
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Clean(dir); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(d, st.Mode().Perm()|0o055); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Executable copies the program at path into a directory of its own that
// the node user can reach, and returns the copy: a program of the source
// tree may sit where that user cannot go (a checkout in root's home).
func Executable(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	Reachable(t, dir)
	out := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(out, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// UID returns the real user id /proc/<pid>/status shows for a process.
func UID(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if uid, err := strconv.Atoi(f[0]); err == nil {
					return uid
				}
			}
		}
	}
	t.Fatalf("/proc/%d/status shows no uid", pid)
	return -1
}
