package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ImageOptions are the options of a new disk image, GNS3's
// QEMU_IMAGE_CREATE_SCHEMA: Format and SizeMB are required; a zero value
// leaves an option to qemu-img's default.
type ImageOptions struct {
	Format        string
	SizeMB        int
	Preallocation string
	LazyRefcounts string
	Subformat     string
	Static        string
	ZeroedGrain   string
	AdapterType   string
	ClusterSize   int
	RefcountBits  int
}

// The enums of GNS3's image creation schema.
var (
	ImageFormats     = []string{"qcow2", "qcow", "vpc", "vdi", "vmdk", "raw"}
	Preallocations   = []string{"off", "metadata", "falloc", "full"}
	Subformats       = []string{"dynamic", "fixed", "streamOptimized", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "monolithicSparse", "monolithicFlat"}
	VMDKAdapterTypes = []string{"ide", "lsilogic", "buslogic", "legacyESX"}
	onOff            = []string{"on", "off"}
)

// The ranges qemu-img accepts.
const (
	maxImageMB      = 64 << 20 // 64 TiB, qcow2's limit
	maxExtendMB     = maxImageMB
	minClusterSize  = 512
	maxClusterSize  = 2 << 20
	maxRefcountBits = 64
)

// imgCommandTimeout bounds one qemu-img run; a fully preallocated image
// takes a while to write.
const imgCommandTimeout = 10 * time.Minute

// ErrQemuImg matches the errors of a qemu-img run that failed; the error
// carries qemu-img's message.
var ErrQemuImg = errors.New("qemu: qemu-img failed")

// validate checks o against the schema and qemu-img's ranges.
func (o ImageOptions) validate() error {
	var errs []error
	enum := func(field, v string, set []string, optional bool) {
		if (v != "" || !optional) && !slices.Contains(set, v) {
			errs = append(errs, invalid("%s %q is not one of %s", field, v, strings.Join(set, ", ")))
		}
	}
	enum("format", o.Format, ImageFormats, false)
	enum("preallocation", o.Preallocation, Preallocations, true)
	enum("lazy_refcounts", o.LazyRefcounts, onOff, true)
	enum("subformat", o.Subformat, Subformats, true)
	enum("static", o.Static, onOff, true)
	enum("zeroed_grain", o.ZeroedGrain, onOff, true)
	enum("adapter_type", o.AdapterType, VMDKAdapterTypes, true)
	if o.SizeMB < 1 || o.SizeMB > maxImageMB {
		errs = append(errs, invalid("size %d MB is out of range 1..%d", o.SizeMB, maxImageMB))
	}
	if o.ClusterSize != 0 && (!powerOfTwo(o.ClusterSize) || o.ClusterSize < minClusterSize || o.ClusterSize > maxClusterSize) {
		errs = append(errs, invalid("cluster_size %d is not a power of two in %d..%d", o.ClusterSize, minClusterSize, maxClusterSize))
	}
	if o.RefcountBits != 0 && (!powerOfTwo(o.RefcountBits) || o.RefcountBits > maxRefcountBits) {
		errs = append(errs, invalid("refcount_bits %d is not a power of two in 1..%d", o.RefcountBits, maxRefcountBits))
	}
	return errors.Join(errs...)
}

func powerOfTwo(n int) bool { return n > 0 && n&(n-1) == 0 }

// options returns the -o value: the options set, sorted by name as GNS3
// passes them. Every value is an enum or a number, so none holds a comma.
func (o ImageOptions) options() string {
	var opts []string
	add := func(k, v string) {
		if v != "" && v != "0" {
			opts = append(opts, k+"="+v)
		}
	}
	add("adapter_type", o.AdapterType)
	add("cluster_size", strconv.Itoa(o.ClusterSize))
	add("lazy_refcounts", o.LazyRefcounts)
	add("preallocation", o.Preallocation)
	add("refcount_bits", strconv.Itoa(o.RefcountBits))
	add("static", o.Static)
	add("subformat", o.Subformat)
	add("zeroed_grain", o.ZeroedGrain)
	return strings.Join(opts, ",")
}

// CreateImage creates a disk image at path with `qemu-img create`. path
// must be absolute (a relative one could be read by qemu-img as a
// protocol, "nbd:..."), and must not exist: it is reserved with an
// exclusive create first, so two requests cannot both write it, and
// removed again if qemu-img fails. Invalid options wrap ErrInvalid, an
// existing file fs.ErrExist, a qemu-img failure ErrQemuImg with its
// message.
func CreateImage(ctx context.Context, img Img, path string, o ImageOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	if !filepath.IsAbs(path) {
		return invalid("image path %q is not absolute", path)
	}
	args := []string{"create", "-f", o.Format}
	if opts := o.options(); opts != "" {
		args = append(args, "-o", opts)
	}
	args = append(args, path, strconv.Itoa(o.SizeMB)+"M")
	return createExclusive(path, img, func() error {
		_, err := runImg(ctx, img, args...)
		return err
	})
}

// createExclusive reserves path with an exclusive create (for the account
// img runs as), runs create to fill it, and removes it if create fails.
func createExclusive(path string, img Img, create func() error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("qemu: could not create disk image %s: %w", path, fs.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("qemu: could not create disk image %s: %w", path, err)
	}
	if c := img.Credential; c != nil {
		err = f.Chown(int(c.Uid), int(c.Gid))
	}
	f.Close()
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("qemu: could not create disk image %s: %w", path, err)
	}
	if err := create(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// ResizeImage grows the image at path by extendMB megabytes with
// `qemu-img resize path +<n>M`. A missing image wraps fs.ErrNotExist.
func ResizeImage(ctx context.Context, img Img, path string, extendMB int) error {
	if extendMB < 1 || extendMB > maxExtendMB {
		return invalid("extend %d MB is out of range 1..%d", extendMB, maxExtendMB)
	}
	if !filepath.IsAbs(path) {
		return invalid("image path %q is not absolute", path)
	}
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("qemu: disk image %s does not exist: %w", path, fs.ErrNotExist)
	}
	_, err := runImg(ctx, img, "resize", path, "+"+strconv.Itoa(extendMB)+"M")
	return err
}

// imageInfo is the part of `qemu-img info --output=json` labd reads.
type imageInfo struct {
	Format string `json:"format"`
}

// fileKeys are the members of qemu-img's info that name other files an
// image makes QEMU open: backing files, qcow2 external data files, VMDK
// extents.
var fileKeys = []string{"filename", "backing-filename", "full-backing-filename", "data-file"}

// Overlay creates a linked-clone qcow2 overlay at path backed by base,
// with base's format (read with `qemu-img info`) recorded so QEMU does not
// probe it. A base that makes QEMU open files outside its own directory
// (a backing file, an external data file, VMDK extents) is refused with
// ErrInvalid: an uploaded image could otherwise hand the guest any file of
// the host. path must not exist.
func Overlay(ctx context.Context, img Img, base, path string) error {
	if !filepath.IsAbs(base) || !filepath.IsAbs(path) {
		return invalid("overlay %q and its base %q must be absolute paths", path, base)
	}
	out, err := runImg(ctx, img, "info", "-U", "--output=json", base)
	if err != nil {
		return err
	}
	var info imageInfo
	if err := json.Unmarshal(out, &info); err != nil || info.Format == "" {
		return fmt.Errorf("%w: info of %s: unreadable output %q", ErrQemuImg, base, out)
	}
	var raw any
	if err := json.Unmarshal(out, &raw); err != nil {
		return fmt.Errorf("%w: info of %s: %w", ErrQemuImg, base, err)
	}
	dir := filepath.Dir(base)
	for _, ref := range fileRefs(raw) {
		if !filepath.IsAbs(ref) {
			ref = filepath.Join(dir, ref)
		}
		if filepath.Dir(filepath.Clean(ref)) != dir {
			return invalid("base image %s refers to %s outside its directory", base, ref)
		}
	}
	return createExclusive(path, img, func() error {
		_, err := runImg(ctx, img, "create", "-f", "qcow2", "-F", info.Format, "-b", base, path)
		return err
	})
}

// fileRefs returns the file names of an info document: the values of
// fileKeys, at any depth.
func fileRefs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, m := range v {
			if s, ok := m.(string); ok && slices.Contains(fileKeys, k) {
				out = append(out, s)
				continue
			}
			out = append(out, fileRefs(m)...)
		}
	case []any:
		for _, m := range v {
			out = append(out, fileRefs(m)...)
		}
	}
	return out
}

// Img is a qemu-img program and the account it runs as.
type Img struct {
	// Path is the program, as a Finder found it.
	Path string
	// Credential is the account qemu-img runs as; nil is labd's own. A
	// node's files are handled as the node's user, so that a file the
	// node could replace (by a link elsewhere) is never opened as root.
	Credential *syscall.Credential
}

// runImg runs qemu-img with args and returns its standard output. A
// failure wraps ErrQemuImg with qemu-img's message, or the context's
// error when the context ended.
func runImg(ctx context.Context, img Img, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, imgCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, img.Path, args...)
	if img.Credential != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: img.Credential}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctxErr := ctx.Err(); err != nil && ctxErr != nil {
		return nil, fmt.Errorf("qemu: qemu-img %s: %w", args[0], ctxErr)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("%w: qemu-img %s: %s", ErrQemuImg, args[0], msg)
	}
	return stdout.Bytes(), nil
}
