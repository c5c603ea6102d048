package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
)

// HasSnapshot reports whether the qcow2 disk at path holds an internal
// snapshot (savevm's) named name, read with qemu-img info.
func HasSnapshot(ctx context.Context, qemuImg, path, name string) (bool, error) {
	out, err := imgOutput(ctx, qemuImg, "info", "--output=json", "-U", path)
	if err != nil {
		return false, err
	}
	var info struct {
		Snapshots []struct {
			Name string `json:"name"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return false, fmt.Errorf("qemu: qemu-img info %s: %w", path, err)
	}
	for _, s := range info.Snapshots {
		if s.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// DeleteSnapshot deletes the internal snapshot name of the disk at path
// (GNS3 deletes a saved state the node will not resume from).
func DeleteSnapshot(ctx context.Context, qemuImg, path, name string) error {
	_, err := imgOutput(ctx, qemuImg, "snapshot", "-d", name, path)
	return err
}

// imgOutput runs qemu-img and returns its output; an error carries its
// diagnostics.
func imgOutput(ctx context.Context, qemuImg string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, qemuImg, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("qemu: qemu-img %s: %w: %s", args[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}
