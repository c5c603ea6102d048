package nio

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
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
	code := m.Run()
	if code == 0 {
		code = checkNoGoroutines()
	}
	os.Exit(code)
}

// checkNoGoroutines fails the run if a bridge's goroutine outlives the
// tests: every test closes what it opened, and Close waits.
func checkNoGoroutines() int {
	deadline := time.Now().Add(2 * time.Second)
	for bridgeGoroutines() > 0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<22)
			fmt.Fprintf(os.Stderr, "nio goroutines leaked by the tests:\n%s\n", buf[:runtime.Stack(buf, true)])
			return 1
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}
