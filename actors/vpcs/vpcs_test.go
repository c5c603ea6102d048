package vpcs

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for out, want := range map[string]string{
		"Welcome to Virtual PC Simulator, version 0.5b2\nDedicated to Daling.": "0.5b2",
		"Welcome to Virtual PC Simulator, version 0.8.1":                       "0.8",
		"Welcome to Virtual PC Simulator, version 0.6":                         "0.6",
	} {
		v, err := ParseVersion(out)
		if err != nil || v.Raw != want {
			t.Errorf("ParseVersion(%q) = %q, %v; want %q", out, v.Raw, err, want)
		}
	}
	if _, err := ParseVersion("bash: vpcs: command not found"); err == nil {
		t.Error("no version in the output, and no error")
	}
}

func TestRelayFlagOnlyFromVersion08b(t *testing.T) {
	for raw, want := range map[string]bool{"0.5b2": false, "0.6": false, "0.8b1": true, "0.8b": true, "0.8": true, "0.8.1": true, "1.0": true} {
		v, err := ParseVersion("version " + raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := v.HasRelayFlag(); got != want {
			t.Errorf("%s: HasRelayFlag %v, want %v", raw, got, want)
		}
	}
}

func TestArgs(t *testing.T) {
	old, _ := ParseVersion("version 0.5b2")
	got := Args(old, Options{Console: 5001, MACID: 3, LocalPort: 20002, RemotePort: 20003, Script: true})
	want := strings.Fields("-p 5001 -m 3 -i 1 -F -s 20002 -c 20003 -t 127.0.0.1 startup.vpc")
	if !slices.Equal(got, want) {
		t.Errorf("0.5b2 args %q, want %q", got, want)
	}
	recent, _ := ParseVersion("version 0.8.1")
	got = Args(recent, Options{Console: 5001, LocalPort: 20002, RemotePort: 20003})
	want = strings.Fields("-p 5001 -m 0 -i 1 -F -R -s 20002 -c 20003 -t 127.0.0.1")
	if !slices.Equal(got, want) {
		t.Errorf("0.8.1 args %q, want %q", got, want)
	}
}

func TestScriptRenameAndHostname(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := ReadScript(dir); ok || err != nil {
		t.Fatalf("a new directory has a script (%v, %v)", ok, err)
	}
	if err := Rename(dir, "PC9"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ReadScript(dir); ok {
		t.Fatal("renaming a node without a script wrote one")
	}
	if err := WriteScript(dir, "set pcname %h\nip 10.0.0.1/24\n", "PC1"); err != nil {
		t.Fatal(err)
	}
	s, _, _ := ReadScript(dir)
	if s != "set pcname PC1\nip 10.0.0.1/24\n" {
		t.Fatalf("script %q: %%h not replaced by the name", s)
	}
	if err := Rename(dir, "PC2"); err != nil {
		t.Fatal(err)
	}
	if s, _, _ = ReadScript(dir); s != "set pcname PC2\nip 10.0.0.1/24\n" {
		t.Fatalf("after rename: %q", s)
	}
	if got := SetPCName("ip dhcp\n", "R"); got != "set pcname R\nip dhcp\n" {
		t.Fatalf("SetPCName on a script without pcname: %q", got)
	}
}

// TestDetectDebianVPCS runs the real vpcs of this machine.
func TestDetectDebianVPCS(t *testing.T) {
	path, err := exec.LookPath("vpcs")
	if err != nil {
		t.Fatalf("vpcs is not installed (make deps installs it): %v", err)
	}
	v, err := Detect(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if v.Raw == "" || v.Major != 0 {
		t.Fatalf("detected %+v", v)
	}
	t.Logf("vpcs %s, -R: %v", v.Raw, v.HasRelayFlag())
}
