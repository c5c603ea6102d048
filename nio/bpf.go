package nio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/bpf"
)

// BPF expressions are compiled by Debian's tcpdump (libpcap), the same
// compiler ubridge uses through pcap_compile, so an expression means exactly
// what it means to a GNS3 user. The program it prints is run per packet by
// the pure-Go VM of golang.org/x/net/bpf; no cgo and no libpcap binding.
const (
	// tcpdumpTimeout bounds one compilation; an expression naming a host
	// makes libpcap resolve it, which may hang without a network.
	tcpdumpTimeout = 5 * time.Second
	// bpfMaxInstructions is the kernel's and libpcap's BPF_MAXINSNS.
	bpfMaxInstructions = 4096
)

// errTcpdumpMissing is wrapped when tcpdump cannot be found.
var errTcpdumpMissing = errors.New("tcpdump is needed to compile bpf filters but was not found in PATH")

// compileBPF compiles one tcpdump expression for Ethernet (EN10MB) frames
// into a VM. A frame matches when vm.Run returns a value > 0.
func compileBPF(expr string) (*bpf.VM, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tcpdumpTimeout)
	defer cancel()
	raw, err := runTcpdump(ctx, expr)
	if err != nil {
		return nil, err
	}
	prog, err := parseTcpdumpProgram(raw)
	if err != nil {
		return nil, fmt.Errorf("reading tcpdump output: %w", err)
	}
	insts, ok := bpf.Disassemble(prog)
	if !ok {
		return nil, errors.New("the compiled program uses BPF instructions labd cannot run")
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		return nil, fmt.Errorf("the compiled program cannot run: %w", err)
	}
	return vm, nil
}

// runTcpdump runs `tcpdump -ddd -y EN10MB -- expr` and returns its standard
// output. No shell is involved; the expression is one argument after "--",
// so one starting with '-' is parsed as an expression, never as a flag
// (tcpdump then rejects it as a syntax error). -ddd compiles with
// pcap_open_dead: no capture device and no privileges are needed.
func runTcpdump(ctx context.Context, expr string) ([]byte, error) {
	path, err := exec.LookPath("tcpdump")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTcpdumpMissing, err)
	}
	cmd := exec.CommandContext(ctx, path, "-ddd", "-y", "EN10MB", "--", expr)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// Do not wait for a grandchild that inherited the pipes once the
	// context has killed tcpdump.
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("tcpdump did not compile it within %v: %w", tcpdumpTimeout, ctx.Err())
		}
		if msg := tcpdumpMessage(stderr.Bytes()); msg != "" {
			return nil, errors.New(msg)
		}
		return nil, fmt.Errorf("tcpdump failed: %w", err)
	}
	return stdout.Bytes(), nil
}

// tcpdumpMessage turns tcpdump's stderr into a one-line message for the
// client, e.g. "can't parse filter expression: syntax error".
func tcpdumpMessage(stderr []byte) string {
	msg := strings.TrimSpace(string(stderr))
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:] // the error is the last line; earlier ones are warnings
	}
	return strings.TrimPrefix(msg, "tcpdump: ")
}

// parseTcpdumpProgram parses tcpdump -ddd output: a line with the
// instruction count, then one "code jt jf k" line (decimal) per instruction.
func parseTcpdumpProgram(out []byte) ([]bpf.RawInstruction, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	n, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		return nil, fmt.Errorf("instruction count: %w", err)
	}
	if n < 1 || n > bpfMaxInstructions {
		return nil, fmt.Errorf("instruction count %d is out of range 1..%d", n, bpfMaxInstructions)
	}
	if len(lines)-1 != n {
		return nil, fmt.Errorf("%d instructions announced, %d printed", n, len(lines)-1)
	}
	prog := make([]bpf.RawInstruction, n)
	for i, line := range lines[1:] {
		ins, err := parseRawInstruction(line)
		if err != nil {
			return nil, fmt.Errorf("instruction %d: %w", i, err)
		}
		prog[i] = ins
	}
	return prog, nil
}

// parseRawInstruction parses one "code jt jf k" line.
func parseRawInstruction(line string) (bpf.RawInstruction, error) {
	f := strings.Fields(line)
	if len(f) != 4 {
		return bpf.RawInstruction{}, fmt.Errorf("%q: want 4 fields", line)
	}
	code, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return bpf.RawInstruction{}, fmt.Errorf("code: %w", err)
	}
	jt, err := strconv.ParseUint(f[1], 10, 8)
	if err != nil {
		return bpf.RawInstruction{}, fmt.Errorf("jt: %w", err)
	}
	jf, err := strconv.ParseUint(f[2], 10, 8)
	if err != nil {
		return bpf.RawInstruction{}, fmt.Errorf("jf: %w", err)
	}
	k, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		return bpf.RawInstruction{}, fmt.Errorf("k: %w", err)
	}
	return bpf.RawInstruction{Op: uint16(code), Jt: uint8(jt), Jf: uint8(jf), K: uint32(k)}, nil
}
