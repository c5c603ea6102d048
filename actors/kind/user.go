package kind

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// DefaultUser is the account labd runs node processes as when it runs
// as root (--node-user); make deps creates it.
const DefaultUser = "labd-node"

// User is the unprivileged account labd runs node processes as when
// labd runs as root (DESIGN, "Security model"). A node's directory is its
// own; the image store and the rest of the data directory are only
// readable to it; /dev/kvm is reached through the host's kvm group, where
// there is one. What labd itself does in a node's directory, it does so
// that nothing the node could leave there (a link to a file elsewhere)
// makes root open another file.
type User struct {
	Name     string
	UID, GID uint32
	// Groups are its supplementary groups: its own, and kvm when the
	// host has that group.
	Groups []uint32
}

// LookupUser finds the account node processes run as. The account
// must exist and must not be root.
func LookupUser(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("node user %q: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("node user %q: %w", name, err)
	}
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("node user %q is root's: node processes must run unprivileged", name)
	}
	nu := &User{Name: name, UID: uint32(uid), GID: uint32(gid)}
	ids, _ := u.GroupIds()
	if g, err := user.LookupGroup("kvm"); err == nil {
		ids = append(ids, g.Gid)
	}
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil && g != 0 && !slices.Contains(nu.Groups, uint32(g)) {
			nu.Groups = append(nu.Groups, uint32(g))
		}
	}
	return nu, nil
}

// Credential is what a process runs as: nil (labd's own account) for a
// nil User.
func (u *User) Credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

// CheckReach reports why the user could not reach path: a directory on
// the way that does not let it through. Node processes work in their
// directories under the data directory and read the image store, so
// those must be reachable; a home directory of mode 0700 on the way is the
// usual culprit.
func (u *User) CheckReach(path string) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for p := path; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && p != filepath.Dir(p) {
			continue // labd creates it, reachable
		}
		if err != nil {
			return err
		}
		if !u.may(st, 0o1) {
			return fmt.Errorf("%s (mode %v, owner %d) does not let the node user %s reach %s", p, st.Mode().Perm(), owner(st), u.Name, path)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// CanWrite reports whether the user may write the file at path.
func (u *User) CanWrite(path string) bool {
	st, err := os.Stat(path)
	return err == nil && u.may(st, 0o2)
}

// may reports whether the user has the permission bits want (0o1 search
// or execute, 0o2 write, 0o4 read) on a file, by its mode and owners.
func (u *User) may(st fs.FileInfo, want fs.FileMode) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	mode := st.Mode().Perm()
	switch {
	case sys.Uid == u.UID:
		return mode>>6&want == want
	case sys.Gid == u.GID || slices.Contains(u.Groups, sys.Gid):
		return mode>>3&want == want
	}
	return mode&want == want
}

func owner(st fs.FileInfo) uint32 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Uid
	}
	return 0
}

// MakeDir creates dir, a node's directory, and makes it and all it holds
// the user's (files labd wrote there, or an older labd did as root). The
// walk goes through an os.Root and changes links themselves, so a link in
// the directory cannot make root change a file elsewhere. A nil user only
// creates the directory.
func (u *User) MakeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if u == nil {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok && sys.Uid == u.UID && sys.Gid == u.GID {
			return nil
		}
		return root.Lchown(p, int(u.UID), int(u.GID))
	})
}
