package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Binary is a QEMU executable and its version.
type Binary struct {
	Path    string `json:"path"`
	Version string `json:"version"`
}

// Finder finds QEMU executables: in Dirs (configured, searched first),
// then in the absolute directories of $PATH.
//
// Only executables found this way are ever run. GNS3 runs whatever path a
// client names as qemu_path or qemu_img; labd accepts a client's path only
// if it is one the Finder would have found.
type Finder struct{ Dirs []string }

// ErrNotQEMU matches every error for an executable that is not a QEMU
// binary found by the Finder: a name that is not qemu-system-<arch> or
// qemu-img, a file outside the search directories (even an executable
// renamed qemu-system-x86_64 in /tmp), a relative path, or a binary that
// is missing or not executable.
var ErrNotQEMU = errors.New("qemu: not a QEMU binary of the search directories")

var (
	systemName = regexp.MustCompile(`^qemu-system-([a-z0-9_]+)$`)
	imgName    = regexp.MustCompile(`^qemu-img$`)
	versionRE  = regexp.MustCompile(`version\s+([0-9a-z\-\.]+)`)
)

// versionTimeout bounds one `-version` run: QEMU answers in milliseconds,
// and a binary that hangs must not hang the listing.
const versionTimeout = 5 * time.Second

// searchDir is a search directory as configured and with its links
// resolved.
type searchDir struct{ path, real string }

// dirs returns the search directories in order, without duplicates (by
// real path: /bin and /usr/bin are one on a merged /usr), relative and
// missing ones left out.
func (f Finder) dirs() []searchDir {
	var out []searchDir
	for _, d := range slices.Concat(f.Dirs, filepath.SplitList(os.Getenv("PATH"))) {
		if !filepath.IsAbs(d) {
			continue
		}
		real, err := filepath.EvalSymlinks(d)
		if err != nil || slices.ContainsFunc(out, func(s searchDir) bool { return s.real == real }) {
			continue
		}
		out = append(out, searchDir{path: filepath.Clean(d), real: real})
	}
	return out
}

// isExecutable reports whether p is an executable regular file.
func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// find returns every executable whose name matches re, the first
// directory winning for each name, and each real file once.
func (f Finder) find(re *regexp.Regexp) []string {
	var names, reals, out []string
	for _, d := range f.dirs() {
		entries, err := os.ReadDir(d.path)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := filepath.Join(d.path, e.Name())
			if !re.MatchString(e.Name()) || slices.Contains(names, e.Name()) || !isExecutable(p) {
				continue
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil || slices.Contains(reals, real) {
				continue
			}
			names, reals, out = append(names, e.Name()), append(reals, real), append(out, p)
		}
	}
	return out
}

// Systems returns every qemu-system-<arch> found, with its version from
// `<bin> -version`. When archs is not empty, only those platforms are
// listed. A binary whose version cannot be read is listed with an empty
// version.
func (f Finder) Systems(ctx context.Context, archs []string) ([]Binary, error) {
	out := []Binary{}
	for _, p := range f.find(systemName) {
		if len(archs) > 0 && !slices.Contains(archs, PlatformOf(p)) {
			continue
		}
		out = append(out, Binary{Path: p, Version: version(ctx, p, "-version")})
	}
	return out, ctx.Err()
}

// Imgs returns every qemu-img found, with its version from
// `qemu-img --version`.
func (f Finder) Imgs(ctx context.Context) ([]Binary, error) {
	out := []Binary{}
	for _, p := range f.find(imgName) {
		out = append(out, Binary{Path: p, Version: version(ctx, p, "--version")})
	}
	return out, ctx.Err()
}

// version runs bin with flag and returns the version it prints, or "".
func version(ctx context.Context, bin, flag string) string {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, flag)
	cmd.WaitDelay = time.Second
	b, err := cmd.Output()
	if err != nil {
		return ""
	}
	if m := versionRE.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// System resolves a node's qemu_path and platform to the binary to run.
// An empty path means qemu-system-<platform> (x86_64 when platform is
// empty). A bare name must be qemu-system-<arch> and is searched for; an
// absolute path must have such a base name and lie, once its directory's
// links are resolved, in one of the search directories. Either way the
// file must be an executable regular file. The absolute path is returned;
// a refusal wraps ErrNotQEMU and names the path.
func (f Finder) System(path, platform string) (string, error) {
	if path == "" {
		if platform == "" {
			platform = "x86_64"
		}
		path = "qemu-system-" + platform
	}
	return f.resolve(path, systemName, "qemu-system-<arch>")
}

// Img resolves a client's qemu_img path as System does, for qemu-img (""
// means qemu-img).
func (f Finder) Img(path string) (string, error) {
	if path == "" {
		path = "qemu-img"
	}
	return f.resolve(path, imgName, "qemu-img")
}

func (f Finder) resolve(path string, re *regexp.Regexp, want string) (string, error) {
	refuse := func(why string) error { return fmt.Errorf("%w: %s %s", ErrNotQEMU, path, why) }
	if !re.MatchString(filepath.Base(path)) {
		return "", refuse("is not named " + want)
	}
	dirs := f.dirs()
	if !strings.ContainsRune(path, filepath.Separator) {
		for _, d := range dirs {
			if p := filepath.Join(d.path, path); isExecutable(p) {
				return p, nil
			}
		}
		return "", refuse("is not found in the QEMU search directories")
	}
	if !filepath.IsAbs(path) {
		return "", refuse("is neither a bare name nor an absolute path")
	}
	p := filepath.Clean(path)
	dir, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", refuse("does not exist")
		}
		return "", fmt.Errorf("%w: %s: %w", ErrNotQEMU, path, err)
	}
	if !slices.ContainsFunc(dirs, func(d searchDir) bool { return d.real == dir }) {
		return "", refuse("is not in a QEMU search directory (" + searchList(dirs) + ")")
	}
	if !isExecutable(p) {
		return "", refuse("is not an executable file")
	}
	return p, nil
}

func searchList(dirs []searchDir) string {
	paths := make([]string, len(dirs))
	for i, d := range dirs {
		paths[i] = d.path
	}
	return strings.Join(paths, ":")
}

// PlatformOf returns the arch of a qemu-system-<arch> path, "" if the path
// is not one.
func PlatformOf(path string) string {
	if m := systemName.FindStringSubmatch(filepath.Base(path)); m != nil {
		return m[1]
	}
	return ""
}

// KVMArchs returns the platforms KVM accelerates on this host, GNS3's
// GET /v2/compute/qemu/capabilities "kvm" list: the host's own arch (and
// i386 on x86_64) when Accel trusts KVM, none otherwise.
func KVMArchs() []string {
	if Accel() != "kvm:tcg" {
		return []string{}
	}
	switch runtime.GOARCH {
	case "amd64":
		return []string{"x86_64", "i386"}
	case "386":
		return []string{"i386"}
	}
	return []string{}
}
