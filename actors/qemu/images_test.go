package qemu

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// store makes an image store in a temporary directory, with a sibling
// "outside" directory holding secret.img.
func store(t *testing.T) (Images, string) {
	t.Helper()
	base := t.TempDir()
	im := Images{Root: filepath.Join(base, "images")}
	outside := filepath.Join(base, "outside")
	for _, d := range []string{im.Dir(), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(outside, "secret.img"), "secret")
	return im, outside
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tree lists every path under dir, to prove a refused request wrote
// nothing.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		out = append(out, p)
		return nil
	})
	return out
}

func md5Hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

func TestResolve(t *testing.T) {
	im, outside := store(t)
	project := filepath.Join(filepath.Dir(im.Root), "project")
	writeFile(t, filepath.Join(im.Dir(), "a.qcow2"), "a")
	writeFile(t, filepath.Join(im.Dir(), "sub", "c.img"), "c")
	writeFile(t, filepath.Join(im.Root, "b.img"), "b")
	writeFile(t, filepath.Join(im.Root, "both.img"), "root")
	writeFile(t, filepath.Join(im.Dir(), "both.img"), "qemu")
	writeFile(t, filepath.Join(project, "disk.qcow2"), "p")
	if err := os.Symlink(filepath.Join(outside, "secret.img"), filepath.Join(im.Dir(), "escape.img")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.qcow2", filepath.Join(im.Dir(), "alias.qcow2")); err != nil {
		t.Fatal(err)
	}
	ok := map[string]struct{ name, allowed, want string }{
		"empty":              {"", "", ""},
		"in QEMU":            {"a.qcow2", "", filepath.Join(im.Dir(), "a.qcow2")},
		"subdirectory":       {"sub/c.img", "", filepath.Join(im.Dir(), "sub", "c.img")},
		"in root":            {"b.img", "", filepath.Join(im.Root, "b.img")},
		"QEMU first":         {"both.img", "", filepath.Join(im.Dir(), "both.img")},
		"absolute in store":  {filepath.Join(im.Root, "b.img"), "", filepath.Join(im.Root, "b.img")},
		"absolute, cleaned":  {im.Dir() + "/sub/../a.qcow2", "", filepath.Join(im.Dir(), "a.qcow2")},
		"project dir":        {filepath.Join(project, "disk.qcow2"), project, filepath.Join(project, "disk.qcow2")},
		"link inside store":  {"alias.qcow2", "", filepath.Join(im.Dir(), "a.qcow2")},
		"absolute QEMU path": {filepath.Join(im.Dir(), "a.qcow2"), project, filepath.Join(im.Dir(), "a.qcow2")},
	}
	for name, tc := range ok {
		got, err := im.Resolve(tc.name, tc.allowed)
		if err != nil || got != tc.want {
			t.Errorf("%s: Resolve(%q) = %q, %v; want %q", name, tc.name, got, err, tc.want)
		}
	}
	bad := map[string]struct{ name, allowed string }{
		"dot dot":                {"../outside/secret.img", ""},
		"inner dot dot":          {"a/../../outside/secret.img", ""},
		"hidden":                 {".hidden", ""},
		"dot element":            {"./a.qcow2", ""},
		"NUL":                    {"a.qcow2\x00", ""},
		"absolute outside":       {"/etc/passwd", ""},
		"absolute escaping":      {im.Root + "/../outside/secret.img", ""},
		"project dir not given":  {filepath.Join(project, "disk.qcow2"), ""},
		"link out of the store":  {"escape.img", ""},
		"absolute link out":      {filepath.Join(im.Dir(), "escape.img"), ""},
		"other dir than allowed": {filepath.Join(outside, "secret.img"), project},
	}
	for name, tc := range bad {
		if got, err := im.Resolve(tc.name, tc.allowed); !errors.Is(err, ErrBadImagePath) {
			t.Errorf("%s: Resolve(%q) = %q, %v; want ErrBadImagePath", name, tc.name, got, err)
		}
	}
	for _, name := range []string{"nope.qcow2", filepath.Join(im.Root, "nope.qcow2"), "sub", "a.qcow2/x"} {
		_, err := im.Resolve(name, "")
		var missing *MissingError
		if !errors.As(err, &missing) || missing.Image != name {
			t.Errorf("Resolve(%q) = %v; want a MissingError for it", name, err)
		} else if want := "The image " + name + " is missing"; err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
	}
	if _, err := (Images{Root: "relative"}).Resolve("a.qcow2", ""); err == nil {
		t.Error("a store with a relative root resolved a name")
	}
}

func TestUploadListOpen(t *testing.T) {
	im, _ := store(t)
	data := bytes.Repeat([]byte("labd image "), 100_000)
	sum, err := im.Upload("linux.qcow2", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if want := md5Hex(data); sum != want {
		t.Fatalf("Upload md5 %s, want %s", sum, want)
	}
	sidecar, err := os.ReadFile(filepath.Join(im.Dir(), "linux.qcow2.md5sum"))
	if err != nil || string(sidecar) != sum {
		t.Fatalf("sidecar %q, %v; want %q", sidecar, err, sum)
	}
	if _, err := im.Upload("dir/small.img", strings.NewReader("small")); err != nil {
		t.Fatal(err)
	}
	// Files the store must not list.
	writeFile(t, filepath.Join(im.Dir(), ".hidden"), "h")
	writeFile(t, filepath.Join(im.Dir(), ".cache", "x.img"), "h")
	writeFile(t, filepath.Join(im.Dir(), "partial.img.tmp"), "t")
	list, err := im.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []ImageInfo{
		{Filename: "dir/small.img", Path: "dir/small.img", MD5Sum: md5Hex([]byte("small")), FileSize: 5},
		{Filename: "linux.qcow2", Path: "linux.qcow2", MD5Sum: sum, FileSize: int64(len(data))},
	}
	if !slices.Equal(list, want) {
		t.Fatalf("List = %+v\nwant %+v", list, want)
	}
	f, err := im.Open("linux.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Open read %d bytes, %v; want the %d uploaded", len(got), err, len(data))
	}
	// A second upload replaces the image and its sum.
	if sum2, err := im.Upload("linux.qcow2", strings.NewReader("v2")); err != nil || sum2 != md5Hex([]byte("v2")) {
		t.Fatalf("re-upload: %s, %v", sum2, err)
	}
	if _, err := im.Open("missing.img"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want fs.ErrNotExist", err)
	}
	if _, err := im.Open("dir"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(a directory) = %v, want fs.ErrNotExist", err)
	}
	if _, err := im.Upload("dir", strings.NewReader("x")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Upload onto a directory = %v, want fs.ErrExist", err)
	}
	if _, err := im.Upload("linux.qcow2/x", strings.NewReader("x")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Upload under a file = %v, want fs.ErrExist", err)
	}
	empty, err := (Images{Root: filepath.Join(t.TempDir(), "none")}).List()
	if err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("List of a missing store = %#v, %v; want an empty list", empty, err)
	}
}

func TestBadNamesWriteNothing(t *testing.T) {
	im, outside := store(t)
	base := filepath.Dir(im.Root)
	writeFile(t, filepath.Join(im.Dir(), "ok.img"), "ok")
	if err := os.Symlink(outside, filepath.Join(im.Dir(), "out")); err != nil {
		t.Fatal(err)
	}
	before := tree(t, base)
	for _, name := range []string{
		"", "../x", "../outside/x", "/etc/passwd", ".hidden", "a/../../x", "a/./b", "a//b", "a/",
		"x\x00y", `..\x`, "\xff.img", "ok.img.md5sum", "up.tmp", "sub/.git/config",
	} {
		if _, err := im.Upload(name, strings.NewReader("evil")); !errors.Is(err, ErrBadImagePath) {
			t.Errorf("Upload(%q) = %v, want ErrBadImagePath", name, err)
		}
		if f, err := im.Open(name); !errors.Is(err, ErrBadImagePath) {
			if f != nil {
				f.Close()
			}
			if name != "ok.img.md5sum" && name != "up.tmp" { // plain names, downloadable
				t.Errorf("Open(%q) = %v, want ErrBadImagePath", name, err)
			}
		}
	}
	// A link out of the store is not followed, for writing or reading.
	if _, err := im.Upload("out/x.img", strings.NewReader("evil")); err == nil {
		t.Error("Upload through a link out of the store succeeded")
	}
	if f, err := im.Open("out/secret.img"); err == nil {
		f.Close()
		t.Error("Open through a link out of the store succeeded")
	}
	if after := tree(t, base); !slices.Equal(before, after) {
		t.Fatalf("refused uploads changed the tree:\nbefore %v\nafter  %v", before, after)
	}
}

func TestMD5Sidecar(t *testing.T) {
	im, _ := store(t)
	p := filepath.Join(im.Dir(), "disk.img")
	writeFile(t, p, "content")
	sum, err := im.MD5(p)
	if err != nil || sum != md5Hex([]byte("content")) {
		t.Fatalf("MD5 = %s, %v", sum, err)
	}
	if b, err := os.ReadFile(p + ".md5sum"); err != nil || string(b) != sum {
		t.Fatalf("sidecar %q, %v", b, err)
	}
	// A fresh sidecar is trusted: a planted sum is returned as is.
	planted := strings.Repeat("ab", 16)
	writeFile(t, p+".md5sum", planted)
	if got, _ := im.MD5(p); got != planted {
		t.Fatalf("MD5 with a fresh sidecar = %s, want the sidecar's %s", got, planted)
	}
	// A sidecar older than the file is not.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p+".md5sum", old, old); err != nil {
		t.Fatal(err)
	}
	if got, _ := im.MD5(p); got != sum {
		t.Fatalf("MD5 with a stale sidecar = %s, want %s", got, sum)
	}
	if b, _ := os.ReadFile(p + ".md5sum"); string(b) != sum {
		t.Fatalf("stale sidecar not rewritten: %q", b)
	}
	// A sidecar that is not a sum is ignored.
	writeFile(t, p+".md5sum", "garbage")
	if got, _ := im.MD5(p); got != sum {
		t.Fatalf("MD5 with a garbage sidecar = %s, want %s", got, sum)
	}
	if _, err := im.MD5(filepath.Join(im.Dir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("MD5(missing) = %v", err)
	}
}

func TestLocate(t *testing.T) {
	im, outside := store(t)
	project := filepath.Join(filepath.Dir(im.Root), "project")
	if err := os.MkdirAll(project, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ name, allowed, want string }{
		"relative":      {"new.qcow2", "", filepath.Join(im.Dir(), "new.qcow2")},
		"subdirectory":  {"a/b/new.qcow2", "", filepath.Join(im.Dir(), "a", "b", "new.qcow2")},
		"absolute root": {filepath.Join(im.Root, "x.img"), "", filepath.Join(im.Root, "x.img")},
		"project":       {filepath.Join(project, "hda.qcow2"), project, filepath.Join(project, "hda.qcow2")},
	} {
		got, err := im.Locate(tc.name, tc.allowed)
		if err != nil || got != tc.want {
			t.Errorf("%s: Locate(%q) = %q, %v; want %q", name, tc.name, got, err, tc.want)
		}
	}
	if st, err := os.Stat(filepath.Join(im.Dir(), "a", "b")); err != nil || !st.IsDir() {
		t.Errorf("Locate did not create the parent of a relative name: %v", err)
	}
	for _, name := range []string{"../x", "/etc/x.img", filepath.Join(outside, "x.img"), filepath.Join(project, "x.img"), im.Root + "/../outside/x", filepath.Join(im.Root, ".hidden"), ""} {
		if got, err := im.Locate(name, ""); !errors.Is(err, ErrBadImagePath) {
			t.Errorf("Locate(%q) = %q, %v; want ErrBadImagePath", name, got, err)
		}
	}
	if _, err := im.Locate(filepath.Join(im.Root, "no", "dir.img"), ""); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Locate in a missing directory = %v, want fs.ErrNotExist", err)
	}
	link := filepath.Join(project, "link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Locate(filepath.Join(link, "x.img"), project); !errors.Is(err, ErrBadImagePath) {
		t.Errorf("Locate through a link out of the project = %v, want ErrBadImagePath", err)
	}
}

// FuzzCheckName checks that an accepted name stays inside the directory
// it is joined to and names no hidden file.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"a.img", "a/b.qcow2", "../x", "a/../../x", ".x", "/etc/passwd", "a//b", "a/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rel, err := checkName(name)
		if err != nil {
			if !errors.Is(err, ErrBadImagePath) {
				t.Fatalf("checkName(%q) = %v, not ErrBadImagePath", name, err)
			}
			return
		}
		p := filepath.Join("/store", rel)
		if !within("/store", p) || p == "/store" || filepath.Clean(p) != p {
			t.Fatalf("checkName accepted %q, which joins to %q", name, p)
		}
		for _, e := range strings.Split(rel, "/") {
			if strings.HasPrefix(e, ".") {
				t.Fatalf("checkName accepted %q with element %q", name, e)
			}
		}
	})
}
