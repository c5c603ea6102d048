// Package vpcs knows the VPCS program: its version, its command line and
// its startup script. It runs nothing itself and knows nothing of events.
package vpcs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ScriptName is the startup script's name in the node directory.
const ScriptName = "startup.vpc"

// LogName is the file the process's output goes to.
const LogName = "vpcs.log"

// maxScript bounds what ReadScript reads: a script labd wrote fits in a
// request body; the node may have grown it since (VPCS's save).
const maxScript = 1 << 20

// Version is a VPCS version such as 0.5b2 or 0.8.1.
type Version struct {
	Major, Minor int
	// Beta is the beta number (0.5b2 -> 2); 0 for a release.
	Beta int
	Raw  string
}

var versionRE = regexp.MustCompile(`version (\d+)\.(\d+)(?:b(\d+))?`)

// ParseVersion reads the version from `vpcs -v` output ("Welcome to
// Virtual PC Simulator, version 0.5b2").
func ParseVersion(out string) (Version, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return Version{}, errors.New("vpcs: no version in `vpcs -v` output")
	}
	v := Version{Raw: m[1] + "." + m[2]}
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Beta, _ = strconv.Atoi(m[3])
		v.Raw += "b" + m[3]
	}
	return v, nil
}

// less reports whether v is older than w; a beta is older than its release.
func (v Version) less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	vb, wb := v.Beta, w.Beta
	if vb == 0 {
		vb = 1 << 30
	}
	if wb == 0 {
		wb = 1 << 30
	}
	return vb < wb
}

// HasRelayFlag reports whether this VPCS knows -R (disable relay), which
// GNS3 passes from 0.8b on. Debian's 0.5b2 refuses it.
func (v Version) HasRelayFlag() bool { return !v.less(Version{Major: 0, Minor: 8, Beta: 1}) }

// Detect runs `path -v` and returns the version it prints.
func Detect(ctx context.Context, path string) (Version, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// vpcs -v prints its banner and exits with status 0 or 1 depending on
	// the build: only the output matters.
	out, err := exec.CommandContext(ctx, path, "-v").CombinedOutput()
	v, perr := ParseVersion(string(out))
	if perr != nil {
		if err != nil {
			return Version{}, fmt.Errorf("vpcs: run %s -v: %w", path, err)
		}
		return Version{}, perr
	}
	return v, nil
}

// Options are the per-start values of the command line.
type Options struct {
	// Console is the internal TCP console port VPCS listens on.
	Console int
	// MACID is the MAC offset: the node's MAC is 00:50:79:66:68:<MACID>.
	MACID int
	// LocalPort and RemotePort are the UDP tunnel to labd's bridge, on
	// 127.0.0.1.
	LocalPort, RemotePort int
	// Script is true when the startup script exists.
	Script bool
}

// Args returns the arguments of a VPCS start, as GNS3 builds them:
// -p <console> -m <mac> -i 1 -F [-R] -s <lport> -c <rport> -t 127.0.0.1 [startup.vpc].
func Args(v Version, o Options) []string {
	args := []string{"-p", strconv.Itoa(o.Console), "-m", strconv.Itoa(o.MACID), "-i", "1", "-F"}
	if v.HasRelayFlag() {
		args = append(args, "-R")
	}
	args = append(args, "-s", strconv.Itoa(o.LocalPort), "-c", strconv.Itoa(o.RemotePort), "-t", "127.0.0.1")
	if o.Script {
		args = append(args, ScriptName)
	}
	return args
}

// WriteScript writes the startup script into dir, with %h replaced by the
// node's name, as GNS3 does. The node's process may own dir: the script is
// never written through a link it could have left there.
func WriteScript(dir, script, name string) error {
	script = strings.ReplaceAll(script, "%h", name)
	return writeScript(dir, script)
}

func writeScript(dir, script string) error {
	f, err := os.OpenFile(filepath.Join(dir, ScriptName), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(script)
	return errors.Join(err, f.Close())
}

// ReadScript returns the startup script of dir; ok is false when there is
// none. Like WriteScript, it does not follow a link.
func ReadScript(dir string) (script string, ok bool, err error) {
	f, err := os.OpenFile(filepath.Join(dir, ScriptName), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxScript))
	if err != nil {
		return "", false, err
	}
	return string(b), true, nil
}

// Rename updates the `set pcname` line of dir's startup script to name, or
// adds one when the script has none. A node without a script gets none.
func Rename(dir, name string) error {
	script, ok, err := ReadScript(dir)
	if err != nil || !ok {
		return err
	}
	return writeScript(dir, SetPCName(script, name))
}

// SetPCName returns script with its `set pcname` line naming name.
func SetPCName(script, name string) string {
	var out bytes.Buffer
	found := false
	sc := bufio.NewScanner(strings.NewReader(script))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "set" && f[1] == "pcname" {
			line, found = "set pcname "+name, true
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	if !found {
		return "set pcname " + name + "\n" + out.String()
	}
	return out.String()
}
