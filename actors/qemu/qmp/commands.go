package qmp

import (
	"context"
	"errors"
)

// Status returns the run state from query-status: status is one of
// running, paused, shutdown, prelaunch, inmigrate, internal-error,
// io-error, guest-panicked, suspended, watchdog, ...; running is true while
// the guest CPUs run.
func (c *Client) Status(ctx context.Context) (status string, running bool, err error) {
	var r struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.Execute(ctx, "query-status", nil, &r); err != nil {
		return "", false, err
	}
	return r.Status, r.Running, nil
}

// Stop pauses the guest CPUs (QEMU emits STOP if they were running).
func (c *Client) Stop(ctx context.Context) error { return c.Execute(ctx, "stop", nil, nil) }

// Cont resumes the guest CPUs (QEMU emits RESUME if they were paused).
func (c *Client) Cont(ctx context.Context) error { return c.Execute(ctx, "cont", nil, nil) }

// SystemReset resets the machine (QEMU emits RESET, and the firmware may
// cause more RESET events of its own).
func (c *Client) SystemReset(ctx context.Context) error {
	return c.Execute(ctx, "system_reset", nil, nil)
}

// SystemPowerdown presses the ACPI power button (QEMU emits POWERDOWN).
// The guest decides whether to shut down; wait for SHUTDOWN with a timeout.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// Quit makes QEMU exit (it emits SHUTDOWN with reason host-qmp-quit, then
// closes the connection). The connection ending before the reply counts as
// success, since QEMU being gone is what quit asks for; after Close, Quit
// fails with ErrClosed.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrClosed) && !errors.Is(err, errCloseCalled) {
		return nil
	}
	return err
}

// HumanMonitorCommand runs an HMP command line (savevm, loadvm, set_link,
// info ...) and returns its output. HMP reports most failures in that
// output ("Error: Snapshot 'x' does not exist ...") rather than as a QMP
// error, so callers must inspect it.
func (c *Client) HumanMonitorCommand(ctx context.Context, cmdline string) (string, error) {
	var out string
	args := struct {
		CommandLine string `json:"command-line"`
	}{cmdline}
	if err := c.Execute(ctx, "human-monitor-command", args, &out); err != nil {
		return "", err
	}
	return out, nil
}
