package qemu

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Images is labd's image store: Root is <data-dir>/images; QEMU images
// live in Root/QEMU, as in GNS3's images_path.
//
// Every name a client gives is checked before any file is touched, and
// files are opened through os.Root where the store itself is the boundary,
// so a name can neither leave the store nor follow a symbolic link out of
// it.
type Images struct{ Root string }

// ErrBadImagePath matches (errors.Is) every error for an image name that
// is not a plain relative path inside the store or that tries to leave
// it: empty, "..", an element starting with ".", an absolute path outside
// the allowed directories, a NUL byte, a backslash, invalid UTF-8.
var ErrBadImagePath = errors.New("qemu: image path refused")

// MissingError reports that an image a node names does not exist.
type MissingError struct{ Image string }

// Error is GNS3's ImageMissingError message.
func (e *MissingError) Error() string { return "The image " + e.Image + " is missing" }

// ImageInfo describes one image of the store.
type ImageInfo struct {
	Filename string `json:"filename"`
	Path     string `json:"path"`
	MD5Sum   string `json:"md5sum"`
	FileSize int64  `json:"filesize"`
}

// The suffixes of the store's own files: md5 sidecars and uploads in
// progress. Neither is listed nor accepted as an upload name.
const (
	md5Suffix = ".md5sum"
	tmpSuffix = ".tmp"
)

// Dir returns the directory of QEMU images, Root/QEMU.
func (im Images) Dir() string { return filepath.Join(im.Root, "QEMU") }

// check refuses a store without an absolute root: a relative one would
// put images wherever the daemon happens to run.
func (im Images) check() error {
	if !filepath.IsAbs(im.Root) {
		return fmt.Errorf("qemu: the image store root %q is not an absolute path", im.Root)
	}
	return nil
}

func badPath(name, why string) error {
	return fmt.Errorf("%w: %q %s", ErrBadImagePath, name, why)
}

// checkName checks a relative image name: slash-separated elements, none
// empty and none starting with "." (which rules out ".", "..", hidden
// files and trailing slashes). It returns the name as an OS path.
func checkName(name string) (string, error) {
	switch {
	case name == "":
		return "", badPath(name, "is empty")
	case !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\\"):
		return "", badPath(name, "contains a NUL byte, a backslash or invalid UTF-8")
	case strings.HasPrefix(name, "/"):
		return "", badPath(name, "is absolute")
	}
	for elem := range strings.SplitSeq(name, "/") {
		if elem == "" || strings.HasPrefix(elem, ".") {
			return "", badPath(name, "has an empty element or one starting with \".\"")
		}
	}
	return filepath.FromSlash(name), nil
}

// within reports whether p is dir or lies under it, lexically.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && filepath.IsLocal(rel)
}

// roots returns the directories an absolute image path may lie in: Root,
// Dir (which may be a link to another disk) and allowedDir, each as given
// and with its symbolic links resolved.
func (im Images) roots(allowedDir string) []string {
	dirs := []string{im.Root, im.Dir()}
	if allowedDir != "" && filepath.IsAbs(allowedDir) {
		dirs = append(dirs, filepath.Clean(allowedDir))
	}
	out := slices.Clone(dirs)
	for _, d := range dirs {
		if real, err := filepath.EvalSymlinks(d); err == nil {
			out = append(out, real)
		}
	}
	return out
}

// allowed reports whether p lies inside one of roots.
func allowed(p string, roots []string) bool {
	return slices.ContainsFunc(roots, func(d string) bool { return within(d, p) })
}

// Resolve returns the absolute path of an image property value. "" stays
// "". A relative name is looked up in Root/QEMU, then Root (GNS3's order);
// an absolute path is accepted only inside Root or inside allowedDir (the
// node's project directory; "" for none). Symbolic links are resolved and
// the real path must also lie inside those directories; the real path is
// returned. A file that does not exist gives *MissingError, a name that
// would leave the store ErrBadImagePath.
func (im Images) Resolve(name, allowedDir string) (string, error) {
	if name == "" {
		return "", nil
	}
	if err := im.check(); err != nil {
		return "", err
	}
	roots := im.roots(allowedDir)
	if filepath.IsAbs(name) {
		if strings.ContainsRune(name, 0) {
			return "", badPath(name, "contains a NUL byte")
		}
		p := filepath.Clean(name)
		if !allowed(p, roots) {
			return "", badPath(name, "is outside the image directory and the project directory")
		}
		return resolveFile(name, p, roots)
	}
	rel, err := checkName(name)
	if err != nil {
		return "", err
	}
	for _, dir := range []string{im.Dir(), im.Root} {
		p, err := resolveFile(name, filepath.Join(dir, rel), roots)
		if _, missing := errors.AsType[*MissingError](err); missing {
			continue
		}
		return p, err
	}
	return "", &MissingError{Image: name}
}

// resolveFile returns the real path of the regular file p, which must lie
// inside roots once its links are resolved.
func resolveFile(name, p string, roots []string) (string, error) {
	real, err := filepath.EvalSymlinks(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return "", &MissingError{Image: name}
	}
	if err != nil {
		return "", fmt.Errorf("qemu: resolve image %s: %w", name, err)
	}
	if !allowed(real, roots) {
		return "", badPath(name, "links outside the image directory and the project directory")
	}
	if st, err := os.Stat(real); err != nil || !st.Mode().IsRegular() {
		return "", &MissingError{Image: name}
	}
	return real, nil
}

// Locate returns the absolute path where a new image named by a client
// goes (qemu-img create). A relative name, checked as for Upload, is
// placed under Root/QEMU, its parent directories created; an absolute path
// is accepted only inside Root or allowedDir, and its parent directory
// must exist. The parent's symbolic links are resolved before the check.
// The file itself is not created.
func (im Images) Locate(name, allowedDir string) (string, error) {
	if err := im.check(); err != nil {
		return "", err
	}
	p := name
	if !filepath.IsAbs(name) {
		rel, err := checkName(name)
		if err != nil {
			return "", err
		}
		if err := im.mkdirs(rel); err != nil {
			return "", err
		}
		p = filepath.Join(im.Dir(), rel)
	}
	if strings.ContainsRune(p, 0) {
		return "", badPath(name, "contains a NUL byte")
	}
	p = filepath.Clean(p)
	base := filepath.Base(p)
	if strings.HasPrefix(base, ".") || base == string(filepath.Separator) {
		return "", badPath(name, "names a hidden file or a directory")
	}
	roots := im.roots(allowedDir)
	if !allowed(p, roots) {
		return "", badPath(name, "is outside the image directory and the project directory")
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return "", fmt.Errorf("qemu: the directory of %s: %w", name, err)
	}
	if !allowed(parent, roots) {
		return "", badPath(name, "links outside the image directory and the project directory")
	}
	return filepath.Join(parent, base), nil
}

// mkdirs creates Root/QEMU and the parent directories of rel inside it.
// A file in the way is reported as fs.ErrExist.
func (im Images) mkdirs(rel string) error {
	if err := os.MkdirAll(im.Dir(), 0o755); err != nil {
		return fmt.Errorf("qemu: create the image directory: %w", err)
	}
	dir := filepath.Dir(rel)
	if dir == "." {
		return nil
	}
	root, err := os.OpenRoot(im.Dir())
	if err != nil {
		return fmt.Errorf("qemu: open the image directory: %w", err)
	}
	defer root.Close()
	if err := root.MkdirAll(dir, 0o755); err != nil {
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("qemu: create directory %s: %w: a file is in the way", dir, fs.ErrExist)
		}
		return fmt.Errorf("qemu: create directory %s: %w", dir, err)
	}
	return nil
}

// MD5 returns the hex md5 sum of the file at path. The sum is cached in a
// "<path>.md5sum" sidecar holding just the hex sum, as GNS3 writes it. The
// sidecar is reused while it is not older than the file: file times tick
// coarsely, so a sidecar written right after the file often has the same
// time, and demanding strictly newer would rehash every fresh upload.
// The sidecar is (re)written after hashing; a failure to write it (a
// read-only directory) is ignored, as the sum is still right.
func (im Images) MD5(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("qemu: md5 of %s: %w", path, err)
	}
	sidecar := path + md5Suffix
	if sst, err := os.Stat(sidecar); err == nil && !sst.ModTime().Before(st.ModTime()) {
		if b, err := os.ReadFile(sidecar); err == nil && isMD5(strings.TrimSpace(string(b))) {
			return strings.TrimSpace(string(b)), nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("qemu: md5 of %s: %w", path, err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("qemu: md5 of %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	// A file that changed while it was hashed gets no sidecar.
	if after, err := f.Stat(); err == nil && after.ModTime().Equal(st.ModTime()) && after.Size() == st.Size() {
		_ = os.WriteFile(sidecar, []byte(sum), 0o644)
	}
	return sum, nil
}

func isMD5(s string) bool {
	if len(s) != 2*md5.Size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// List returns the images of Root/QEMU, sorted by name: every regular
// file, in subdirectories too, but md5 sidecars, uploads in progress
// (*.tmp) and hidden files and directories. Filename and Path are both the
// name relative to Root/QEMU, with forward slashes, as GNS3 shows it. A
// symbolic link is listed when it leads to a regular file inside the
// directory.
func (im Images) List() ([]ImageInfo, error) {
	if err := im.check(); err != nil {
		return nil, err
	}
	out := []ImageInfo{}
	root, err := os.OpenRoot(im.Dir())
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("qemu: list images: %w", err)
	}
	defer root.Close()
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || strings.HasSuffix(p, md5Suffix) || strings.HasSuffix(p, tmpSuffix) {
			return nil
		}
		// Stat through the root: a link leading out of it fails.
		st, err := root.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			return nil
		}
		sum, err := im.MD5(filepath.Join(im.Dir(), filepath.FromSlash(p)))
		if err != nil {
			return err
		}
		out = append(out, ImageInfo{Filename: p, Path: p, MD5Sum: sum, FileSize: st.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("qemu: list images: %w", err)
	}
	slices.SortFunc(out, func(a, b ImageInfo) int { return strings.Compare(a.Filename, b.Filename) })
	return out, nil
}

// Upload streams r into Root/QEMU/name and returns its md5 sum. The name
// is checked as a relative name for Resolve, and may not end in .md5sum or
// .tmp (the store's own files). The data goes to a hidden temporary file
// ending in .tmp, unique so concurrent uploads of one name cannot mix, is
// synced, then renamed into place; the md5 sidecar is computed while
// streaming. Parent directories are created. A directory or file in the
// way is reported as fs.ErrExist.
func (im Images) Upload(name string, r io.Reader) (string, error) {
	if err := im.check(); err != nil {
		return "", err
	}
	rel, err := checkName(name)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(rel, md5Suffix) || strings.HasSuffix(rel, tmpSuffix) {
		return "", badPath(name, "ends in "+md5Suffix+" or "+tmpSuffix+", reserved for the store's own files")
	}
	if err := im.mkdirs(rel); err != nil {
		return "", err
	}
	root, err := os.OpenRoot(im.Dir())
	if err != nil {
		return "", fmt.Errorf("qemu: open the image directory: %w", err)
	}
	defer root.Close()
	if st, err := root.Lstat(rel); err == nil && st.IsDir() {
		return "", fmt.Errorf("qemu: upload %s: %w: it is a directory", name, fs.ErrExist)
	}
	tmp := filepath.Join(filepath.Dir(rel), "."+filepath.Base(rel)+"."+randomHex()+tmpSuffix)
	sum, err := writeSynced(root, tmp, r)
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		root.Remove(tmp)
		return "", fmt.Errorf("qemu: upload %s: %w", name, err)
	}
	// Written after the rename, so it is not older than the image. A
	// sidecar that cannot be written is recomputed by MD5 later.
	_ = root.WriteFile(rel+md5Suffix, []byte(sum), 0o644)
	syncDir(root, filepath.Dir(rel))
	return sum, nil
}

// writeSynced copies r into the new file name of root, syncs it and
// returns its md5 sum.
func writeSynced(root *os.Root, name string, r io.Reader) (string, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	h := md5.New()
	_, err = io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), err
}

// syncDir makes a rename in dir durable; a failure only weakens
// durability, so it is not reported.
func syncDir(root *os.Root, dir string) {
	if d, err := root.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Open opens an image of Root/QEMU for download. The name is checked as
// for Upload (GNS3 refuses names starting with "." or leaving the
// directory) and opened through the directory, so a link out of it is
// refused. A missing image, or one that is not a regular file, is
// reported as fs.ErrNotExist.
func (im Images) Open(name string) (*os.File, error) {
	if err := im.check(); err != nil {
		return nil, err
	}
	rel, err := checkName(name)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(im.Dir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("qemu: image %s: %w", name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("qemu: open the image directory: %w", err)
	}
	defer root.Close()
	f, err := root.Open(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return nil, fmt.Errorf("qemu: image %s: %w", name, fs.ErrNotExist)
	case err != nil:
		return nil, badPath(name, "cannot be opened inside the image directory")
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("qemu: image %s: %w", name, fs.ErrNotExist)
	}
	return f, nil
}
