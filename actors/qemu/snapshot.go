package qemu

import (
	"context"
	"encoding/json"
	"fmt"
)

// HasSnapshot reports whether the qcow2 disk at path holds an internal
// snapshot (savevm's) named name, read with qemu-img info.
func HasSnapshot(ctx context.Context, img Img, path, name string) (bool, error) {
	out, err := runImg(ctx, img, "info", "--output=json", "-U", path)
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
func DeleteSnapshot(ctx context.Context, img Img, path, name string) error {
	_, err := runImg(ctx, img, "snapshot", "-d", name, path)
	return err
}
