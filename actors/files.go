package actors

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"labd/events"
)

// CleanPath checks a path a client gave inside a project directory and
// returns it cleaned, relative, with forward slashes. A path that could
// leave the directory is refused with ErrForbidden, whatever its encoding:
// absolute paths, ".." elements (also after percent-decoding, once or
// repeatedly), backslashes, NUL bytes and invalid UTF-8.
func CleanPath(p string) (string, error) {
	forbidden := Forbidden("Permission denied: the path %q is not inside the project directory", p)
	s := p
	for range 4 {
		if strings.ContainsAny(s, "\\\x00") || !utf8.ValidString(s) || path.IsAbs(s) {
			return "", forbidden
		}
		if slices.Contains(strings.Split(s, "/"), "..") {
			return "", forbidden
		}
		d := unescapeLenient(s)
		if d == s {
			break
		}
		s = d
	}
	clean := path.Clean(p)
	if clean == "." || clean == "" {
		return "", Invalid("a file path is required")
	}
	return clean, nil
}

// unescapeLenient decodes every valid %XX escape of s and keeps anything
// else literally, so an invalid escape elsewhere cannot hide an encoded
// ".." from CleanPath.
func unescapeLenient(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// File is one regular file of a project directory.
type File struct {
	Path   string // relative, with forward slashes
	MD5Sum string
}

// tmpDir is the project subdirectory GNS3 wipes on open and close; labd
// also stages uploads there, so it is not listed.
const tmpDir = "tmp"

// projectRoot opens the directory of an open project as an os.Root, which
// refuses any name that resolves outside it, symbolic links included.
func (c *Client) projectRoot(id string) (*os.Root, error) {
	if _, err := c.Project(id); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(c.ProjectDir(id))
	if err != nil {
		return nil, fmt.Errorf("actors: open project %s: %w", id, err)
	}
	return root, nil
}

// ListFiles returns every regular file of an open project with its md5
// sum, sorted by path. Symbolic links are not followed.
func (c *Client) ListFiles(id string) ([]File, error) {
	root, err := c.projectRoot(id)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var files []File
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == tmpDir {
			return fs.SkipDir
		}
		// GNS3 skips Dynamips ghost images: large and regenerated.
		if !d.Type().IsRegular() || strings.HasSuffix(p, ".ghost") {
			return nil
		}
		sum, err := md5File(root, p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: p, MD5Sum: sum})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("actors: list files of project %s: %w", id, err)
	}
	return files, nil
}

func md5File(root *os.Root, name string) (string, error) {
	f, err := root.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// OpenFile opens a regular file of an open project for reading. The file
// is opened through the project directory, so a symbolic link that points
// out of it is refused rather than followed.
func (c *Client) OpenFile(id, name string) (*os.File, error) {
	rel, err := CleanPath(name)
	if err != nil {
		return nil, err
	}
	root, err := c.projectRoot(id)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, NotFound("File %s doesn't exist", rel)
	case err != nil:
		return nil, Forbidden("Permission denied: %s", rel)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, NotFound("File %s doesn't exist", rel)
	}
	return f, nil
}

// writeFile records an upload staged in the project's tmp directory and
// moves it into place.
type writeFile struct {
	ProjectID string
	path      string // clean, relative
	staged    string // relative to the project directory
	size      int64
	md5       string
}

func (c writeFile) projectID() string { return c.ProjectID }

// WriteFile stores body as file name of an open project, creating parent
// directories. The body is staged first, outside the project actor, so a
// large upload does not hold the actor; the actor then records the write
// and moves the file into place.
func (c *Client) WriteFile(ctx context.Context, id, name string, body io.Reader) error {
	rel, err := CleanPath(name)
	if err != nil {
		return err
	}
	root, err := c.projectRoot(id)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll(tmpDir, 0o755); err != nil {
		return fmt.Errorf("actors: stage upload: %w", err)
	}
	staged := tmpDir + "/.upload-" + uuid.NewString()
	f, err := root.OpenFile(staged, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("actors: stage upload: %w", err)
	}
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_, err = call[struct{}](ctx, c, writeFile{ProjectID: id, path: rel, staged: staged, size: n, md5: hex.EncodeToString(h.Sum(nil))})
	}
	if err != nil {
		root.Remove(staged)
		return err
	}
	return nil
}

func (a *projectActor) writeFile(c writeFile) error {
	if !a.state.IsOpen() {
		return a.notFound()
	}
	root, err := os.OpenRoot(a.dir)
	if err != nil {
		return fmt.Errorf("actors: open project %s: %w", a.id, err)
	}
	defer root.Close()
	if st, err := root.Lstat(c.path); err == nil && st.IsDir() {
		return Conflict("%s is a directory", c.path)
	}
	// Preparing the parent directories is harmless if the command then
	// fails, and a parent that cannot exist is the client's error.
	if dir := path.Dir(c.path); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return Conflict("cannot create the directory of %s", c.path)
		}
	}
	if err := a.commit(events.FileWritten{Path: c.path, Size: c.size, MD5Sum: c.md5}); err != nil {
		return err
	}
	if err := root.Rename(c.staged, c.path); err != nil {
		return a.effectFailed("move the uploaded file "+c.path+" into place", err)
	}
	return nil
}
