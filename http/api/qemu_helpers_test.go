package api_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"labd/actors/qemu/qemutest"
	"labd/events"
)

// QEMU nodes of a test lab, running the tiny guest (actors/qemu/qemutest).

// guestBoot bounds a guest's boot under TCG (seconds here; generous).
const guestBoot = 120 * time.Second

// qemuNode is a QEMU node of a test lab.
type qemuNode struct {
	ID      string
	Console int
}

func qemuPath(project string, n qemuNode) string {
	return "/v2/compute/projects/" + project + "/qemu/nodes/" + n.ID
}

// uploadGuest puts the tiny guest's kernel and initrd in the daemon's image
// store, through the API, as vmlinuz and initrd.img.
func (d *daemon) uploadGuest(t testing.TB) {
	t.Helper()
	kernel, initrd := qemutest.Guest(t)
	for name, path := range map[string]string{"vmlinuz": kernel, "initrd.img": initrd} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d.do("POST", "/v2/compute/qemu/images/"+name, string(b)).expect(t, 204, "")
	}
}

// createGuest creates a QEMU node booting the tiny guest at addr (CIDR;
// "" leaves it unconfigured), with one e1000; extra members are appended to
// the body.
func (d *daemon) createGuest(t testing.TB, project, name, addr, extra string) qemuNode {
	t.Helper()
	cmdline := "console=ttyS0 quiet"
	if addr != "" {
		cmdline += " labd.ip=" + addr
	}
	body := fmt.Sprintf(`{"name":%q,"ram":128,"kernel_image":"vmlinuz","initrd":"initrd.img","kernel_command_line":%q%s}`,
		name, cmdline, extra)
	o := d.do("POST", "/v2/compute/projects/"+project+"/qemu/nodes", body).
		expect(t, 201, "/v2/compute/projects/{project_id}/qemu/nodes").object(t)
	return qemuNode{ID: o["node_id"].(string), Console: int(o["console"].(float64))}
}

// startGuest starts a QEMU node, checks the reply (GNS3 2.2: 200 and the
// node) and returns its console, on which the guest has said it is ready.
func (d *daemon) startGuest(t testing.TB, project string, n qemuNode, ready string) *console {
	t.Helper()
	o := d.do("POST", qemuPath(project, n)+"/start", "").expect(t, 200, "").object(t)
	if o["status"] != "started" || !strings.Contains(o["command_line"].(string), "-qmp unix:") {
		t.Fatalf("start replied %v with command line %q", o["status"], o["command_line"])
	}
	c := dialConsole(t, n.Console)
	c.waitFor(0, "labd-guest ready "+ready, guestBoot)
	return c
}

// shell runs a command on the guest's console and waits for want in what
// follows.
func (c *console) shell(line, want string, within time.Duration) string {
	c.t.Helper()
	m := c.mark()
	c.send(line)
	return c.waitFor(m, want, within)
}

// lastStarted returns the process the node's history says runs.
func (d *daemon) lastStarted(t testing.TB, project, node string) events.NodeStarted {
	t.Helper()
	hist := d.nodeHistory(t, project, node)
	for i := len(hist) - 1; i >= 0; i-- {
		if s, ok := hist[i].Data.(events.NodeStarted); ok {
			return s
		}
	}
	t.Fatalf("node %s never started", node)
	return events.NodeStarted{}
}

// lastStop returns the node's last stop event.
func (d *daemon) lastStop(t testing.TB, project, node string) events.NodeStopped {
	t.Helper()
	hist := d.nodeHistory(t, project, node)
	for i := len(hist) - 1; i >= 0; i-- {
		if s, ok := hist[i].Data.(events.NodeStopped); ok {
			return s
		}
	}
	t.Fatalf("node %s never stopped", node)
	return events.NodeStopped{}
}

// waitStatus waits until GET shows the node in status.
func (d *daemon) waitStatus(t testing.TB, path, status string, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		if s := doRequest(t, "GET", d.URL+path, "").expect(t, 200, "").object(t)["status"]; s != status {
			return fmt.Errorf("the node is %v, want %s", s, status)
		}
		return nil
	})
}
