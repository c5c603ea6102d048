package qemu

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const qemuImg = "/usr/bin/qemu-img"

// info is what a test reads of `qemu-img info --output=json`.
type info struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	ClusterSize     int64  `json:"cluster-size"`
	BackingFilename string `json:"backing-filename"`
	BackingFormat   string `json:"backing-filename-format"`
	FormatSpecific  struct {
		Data struct {
			LazyRefcounts bool `json:"lazy-refcounts"`
		} `json:"data"`
	} `json:"format-specific"`
}

func imgInfo(t *testing.T, path string) info {
	t.Helper()
	out, err := exec.Command(qemuImg, "info", "-U", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var i info
	if err := json.Unmarshal(out, &i); err != nil {
		t.Fatal(err)
	}
	return i
}

func TestCreateImage(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		o    ImageOptions
	}{
		{"q.qcow2", ImageOptions{Format: "qcow2", SizeMB: 100, ClusterSize: 65536, LazyRefcounts: "on", Preallocation: "metadata", RefcountBits: 16}},
		{"r.img", ImageOptions{Format: "raw", SizeMB: 3}},
		{"v.vmdk", ImageOptions{Format: "vmdk", SizeMB: 10, Subformat: "monolithicSparse", AdapterType: "lsilogic", ZeroedGrain: "on"}},
		{"d.vdi", ImageOptions{Format: "vdi", SizeMB: 10, Static: "off"}},
		{"p.vhd", ImageOptions{Format: "vpc", SizeMB: 10, Subformat: "dynamic"}},
	} {
		p := filepath.Join(dir, tc.name)
		if err := CreateImage(t.Context(), Img{Path: qemuImg}, p, tc.o); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		i := imgInfo(t, p)
		if i.Format != tc.o.Format || i.VirtualSize < int64(tc.o.SizeMB)<<20 {
			t.Errorf("%s: info %+v, want a %s of %d MB", tc.name, i, tc.o.Format, tc.o.SizeMB)
		}
		if tc.o.Format == "qcow2" && (i.ClusterSize != 65536 || !i.FormatSpecific.Data.LazyRefcounts) {
			t.Errorf("%s: options not applied: %+v", tc.name, i)
		}
	}

	existing := filepath.Join(dir, "existing.img")
	if err := os.WriteFile(existing, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CreateImage(t.Context(), Img{Path: qemuImg}, existing, ImageOptions{Format: "raw", SizeMB: 1}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("create over an existing image = %v, want fs.ErrExist", err)
	}
	if after, _ := os.ReadFile(existing); string(after) != "keep" {
		t.Errorf("create over an existing image changed it to %d bytes", len(after))
	}
	for name, o := range map[string]ImageOptions{
		"format":        {Format: "qed", SizeMB: 1},
		"no size":       {Format: "raw"},
		"huge":          {Format: "raw", SizeMB: 1 << 40},
		"cluster":       {Format: "qcow2", SizeMB: 1, ClusterSize: 64},
		"refcount":      {Format: "qcow2", SizeMB: 1, RefcountBits: 12},
		"preallocation": {Format: "qcow2", SizeMB: 1, Preallocation: "some"},
		"subformat":     {Format: "vmdk", SizeMB: 1, Subformat: "x,backing_file=/etc/passwd"},
		"lazy":          {Format: "qcow2", SizeMB: 1, LazyRefcounts: "yes"},
	} {
		p := filepath.Join(dir, "bad-"+name)
		if err := CreateImage(t.Context(), Img{Path: qemuImg}, p, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: CreateImage = %v, want ErrInvalid", name, err)
		}
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s: a refused create left %s", name, p)
		}
	}
	if err := CreateImage(t.Context(), Img{Path: qemuImg}, "rel.qcow2", ImageOptions{Format: "qcow2", SizeMB: 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("relative path: %v, want ErrInvalid", err)
	}
	// An option qemu-img rejects for the format: its message comes back
	// and nothing is left behind.
	p := filepath.Join(dir, "lazy.img")
	err := CreateImage(t.Context(), Img{Path: qemuImg}, p, ImageOptions{Format: "raw", SizeMB: 1, LazyRefcounts: "on"})
	if !errors.Is(err, ErrQemuImg) {
		t.Fatalf("raw with lazy_refcounts = %v, want ErrQemuImg", err)
	}
	t.Logf("qemu-img's refusal: %v", err)
	if _, err := os.Stat(p); err == nil {
		t.Error("a failed create left its file")
	}
}

func TestResizeImage(t *testing.T) {
	needQEMU(t)
	p := filepath.Join(t.TempDir(), "hda.qcow2")
	if err := CreateImage(t.Context(), Img{Path: qemuImg}, p, ImageOptions{Format: "qcow2", SizeMB: 10}); err != nil {
		t.Fatal(err)
	}
	if err := ResizeImage(t.Context(), Img{Path: qemuImg}, p, 5); err != nil {
		t.Fatal(err)
	}
	if got := imgInfo(t, p).VirtualSize; got != 15<<20 {
		t.Fatalf("virtual size %d after +5M, want %d", got, 15<<20)
	}
	if err := ResizeImage(t.Context(), Img{Path: qemuImg}, p+".missing", 5); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("resize a missing image = %v, want fs.ErrNotExist", err)
	}
	for _, n := range []int{0, -5} {
		if err := ResizeImage(t.Context(), Img{Path: qemuImg}, p, n); !errors.Is(err, ErrInvalid) {
			t.Errorf("extend %d = %v, want ErrInvalid", n, err)
		}
	}
}

func TestOverlay(t *testing.T) {
	needQEMU(t)
	store, project := t.TempDir(), t.TempDir()
	base := filepath.Join(store, "base.img")
	if err := CreateImage(t.Context(), Img{Path: qemuImg}, base, ImageOptions{Format: "raw", SizeMB: 4}); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(project, "hda_disk.qcow2")
	if err := Overlay(t.Context(), Img{Path: qemuImg}, base, overlay); err != nil {
		t.Fatal(err)
	}
	i := imgInfo(t, overlay)
	if i.Format != "qcow2" || i.BackingFilename != base || i.BackingFormat != "raw" || i.VirtualSize != 4<<20 {
		t.Fatalf("overlay info %+v, want qcow2 backed by raw %s", i, base)
	}
	if err := Overlay(t.Context(), Img{Path: qemuImg}, base, overlay); !errors.Is(err, fs.ErrExist) {
		t.Errorf("overlay over an existing file = %v, want fs.ErrExist", err)
	}
	// An image whose backing file lies elsewhere would hand the guest
	// that file: refused, nothing created.
	chained := filepath.Join(project, "second.qcow2")
	if err := Overlay(t.Context(), Img{Path: qemuImg}, overlay, chained); !errors.Is(err, ErrInvalid) {
		t.Errorf("overlay of an image backed from another directory = %v, want ErrInvalid", err)
	}
	if _, err := os.Stat(chained); err == nil {
		t.Error("a refused overlay was created")
	}
	// A backing file in the base's own directory is fine.
	mid := filepath.Join(store, "mid.qcow2")
	if err := Overlay(t.Context(), Img{Path: qemuImg}, base, mid); err != nil {
		t.Fatal(err)
	}
	if err := Overlay(t.Context(), Img{Path: qemuImg}, mid, filepath.Join(project, "third.qcow2")); err != nil {
		t.Errorf("overlay of an image backed from its own directory: %v", err)
	}
	if err := Overlay(t.Context(), Img{Path: qemuImg}, filepath.Join(store, "missing.img"), filepath.Join(project, "m.qcow2")); !errors.Is(err, ErrQemuImg) {
		t.Errorf("overlay of a missing base = %v, want ErrQemuImg", err)
	}
}
