package api_test

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A lab of real VPCS processes driven over HTTP and telnet only.

// vpcsNode is a VPCS node of a test lab.
type vpcsNode struct {
	ID      string
	Console int
}

func (d *daemon) createVPCS(project, name string) vpcsNode {
	d.t.Helper()
	n := d.do("POST", "/v2/compute/projects/"+project+"/vpcs/nodes", `{"name":`+quote(name)+`}`).
		expect(d.t, 201, "/v2/compute/projects/{project_id}/vpcs/nodes").object(d.t)
	return vpcsNode{ID: n["node_id"].(string), Console: int(n["console"].(float64))}
}

func nodePath(project string, n vpcsNode) string {
	return "/v2/compute/projects/" + project + "/vpcs/nodes/" + n.ID
}

// udpPort allocates a UDP port of the project.
func (d *daemon) udpPort(project string) int {
	d.t.Helper()
	o := d.do("POST", "/v2/compute/projects/"+project+"/ports/udp", "").expect(d.t, 201, "").object(d.t)
	return int(o["udp_port"].(float64))
}

func nioBody(lport, rport int, extra string) string {
	return fmt.Sprintf(`{"type":"nio_udp","lport":%d,"rhost":"127.0.0.1","rport":%d%s}`, lport, rport, extra)
}

// link joins port 0/0 of a and b, as a GNS3 controller does: a UDP port on
// each side, a NIO on each pointing at the other.
func (d *daemon) link(project string, a, b vpcsNode) (pa, pb int) {
	d.t.Helper()
	pa, pb = d.udpPort(project), d.udpPort(project)
	d.do("POST", nodePath(project, a)+"/adapters/0/ports/0/nio", nioBody(pa, pb, "")).expect(d.t, 201, "")
	d.do("POST", nodePath(project, b)+"/adapters/0/ports/0/nio", nioBody(pb, pa, "")).expect(d.t, 201, "")
	return pa, pb
}

func (d *daemon) startNode(project string, n vpcsNode) {
	d.t.Helper()
	d.do("POST", nodePath(project, n)+"/start", "").expect(d.t, 200, "")
}

// console is a telnet client of a node console. It collects everything the
// console sends.
type console struct {
	t    testing.TB
	conn net.Conn
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func dialConsole(t testing.TB, port int) *console {
	t.Helper()
	var conn net.Conn
	eventually(t, 10*time.Second, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		return err
	})
	c := &console{t: t, conn: conn, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		b := make([]byte, 4096)
		for {
			n, err := conn.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *console) close() {
	c.conn.Close()
	<-c.done
}

func (c *console) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// mark returns the output's length, for waitFor to look after.
func (c *console) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Len()
}

func (c *console) send(line string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		c.t.Fatalf("console write: %v", err)
	}
}

// waitFor waits until the output after mark contains want, and returns the
// output after mark.
func (c *console) waitFor(mark int, want string, within time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		out := c.output()[mark:]
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("console: %q did not appear within %v; got:\n%s", want, within, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command sends a line and waits for the VPCS prompt that follows the
// line's echo and output, and returns that output.
func (c *console) command(line string, within time.Duration) string {
	c.t.Helper()
	m := c.mark()
	c.send(line)
	deadline := time.Now().Add(within)
	for {
		if out, ok := commandOutput(c.output()[m:], line); ok {
			return out
		}
		out := c.output()[m:]
		if time.Now().After(deadline) {
			c.t.Fatalf("console: %q did not complete within %v; got:\n%q", line, within, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// prompt is a VPCS prompt at the start of a line: "VPCS> ", or the name a
// startup script's set pcname gave it.
var prompt = regexp.MustCompile(`(?:^|\n)\r?[A-Za-z0-9_.-]+> `)

// commandOutput finds the output of line in a console transcript: after
// the line's echo, up to the next prompt. VPCS may echo the line twice (as
// typed, then again after redrawing its prompt); an empty stretch between
// an echo and a prompt is such a redraw.
func commandOutput(out, line string) (string, bool) {
	pos := 0
	for {
		i := strings.Index(out[pos:], line)
		if i < 0 {
			return "", false
		}
		start := pos + i + len(line)
		loc := prompt.FindStringIndex(out[start:])
		if loc == nil {
			return "", false
		}
		if seg := out[start : start+loc[0]]; strings.TrimSpace(seg) != "" {
			return seg, true
		}
		pos = start + loc[1]
	}
}

// setIP gives a VPCS its address and waits until it has it (VPCS checks
// for a duplicate address for about a second first).
// VPCS drops a line typed before its prompt is back (right after it
// starts, say): the command is sent again if its answer does not come.
func (c *console) setIP(ip string) {
	c.t.Helper()
	want := "PC1 : " + ip
	m := c.mark()
	for range 3 {
		c.command("ip "+ip+"/24", 10*time.Second)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(c.output()[m:], want) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c.t.Fatalf("console: ip %s not taken:\n%q", ip, c.output()[m:])
}

// pingStats runs `ping ip -c n` with a per-packet wait and returns the
// replies and round trips seen.
func (c *console) ping(ip string, count int, within time.Duration) (replies int, rtts []time.Duration) {
	c.t.Helper()
	out := c.command(fmt.Sprintf("ping %s -c %d", ip, count), within)
	for line := range strings.SplitSeq(out, "\n") {
		i := strings.Index(line, "time=")
		if !strings.Contains(line, "icmp_seq=") || i < 0 {
			continue
		}
		replies++
		f := strings.Fields(line[i+len("time="):])
		if len(f) > 0 {
			if ms, err := strconv.ParseFloat(f[0], 64); err == nil {
				rtts = append(rtts, time.Duration(ms*float64(time.Millisecond)))
			}
		}
	}
	return replies, rtts
}
