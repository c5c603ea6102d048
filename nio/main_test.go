package nio

import (
	"os"
	"testing"
)

// childRoleEnv, when set, makes the test binary play a child process of
// the benchmarks (see runChild in bench_test.go) instead of running tests:
// the relay then runs in a process of its own, whose CPU time the parent
// can read from /proc.
const childRoleEnv = "LABD_NIO_BENCH_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(m.Run())
}
