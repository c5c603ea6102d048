package e24_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"labd/http/e24"
)

func TestParseKeys(t *testing.T) {
	keys, err := e24.ParseKeys(strings.NewReader(`
# key        secret   project
KEY1  c2VjcmV0  6f1a0d2c-6a4b-4c1e-9d55-3c2b8f0e7a11

	key-2 s2 6F1A0D2C6A4B4C1E9D553C2B8F0E7A12   
# the end
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]e24.Key{
		"KEY1":  {Secret: "c2VjcmV0", Project: "6f1a0d2c-6a4b-4c1e-9d55-3c2b8f0e7a11"},
		"key-2": {Secret: "s2", Project: "6f1a0d2c-6a4b-4c1e-9d55-3c2b8f0e7a12"},
	}
	if len(keys) != len(want) {
		t.Fatalf("keys %+v, want %+v", keys, want)
	}
	for k, v := range want {
		if keys[k] != v {
			t.Fatalf("key %s: %+v, want %+v", k, keys[k], v)
		}
	}
	for _, c := range []struct{ name, text, msg string }{
		{"two fields", "k s\n", "line 1: want KEY SECRET PROJECT_ID"},
		{"four fields", "# c\nk s 6f1a0d2c-6a4b-4c1e-9d55-3c2b8f0e7a11 x\n", "line 2: want KEY SECRET PROJECT_ID"},
		{"not a project id", "k s project\n", `line 1: "project" is not a project id`},
		{"a key with a colon", "k:1 s 6f1a0d2c-6a4b-4c1e-9d55-3c2b8f0e7a11\n", "line 1: a key may not hold ':'"},
		{"a key twice", "k s 6f1a0d2c-6a4b-4c1e-9d55-3c2b8f0e7a11\nk t 6f1a0d2c-6a4b-4c1e-9d55-3c2b8f0e7a12\n", "line 2: the key is given twice"},
		{"only comments", "# nothing\n\n", "the table is empty"},
	} {
		if _, err := e24.ParseKeys(strings.NewReader(c.text)); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", c.name, err, c.msg)
		}
	}

	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte("k s 6f1a0d2c-6a4b-4c1e-9d55-3c2b8f0e7a11\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, err := e24.ReadKeys(path); err != nil || keys["k"].Secret != "s" {
		t.Fatalf("ReadKeys: %+v, %v", keys, err)
	}
	if _, err := e24.ReadKeys(path + ".missing"); err == nil {
		t.Fatal("ReadKeys of a missing file did not fail")
	}
}

func TestOwns(t *testing.T) {
	for path, want := range map[string]bool{
		"/v2/virtual-machines": true, "/v2/virtual-machines/": true, "/v2/virtual-machines/x/poweron": true,
		"/v2/virtual-machinesx": false, "/v2/compute/version": false, "/v2/": false, "/v2.1/servers": false,
	} {
		if got := e24.Owns(path); got != want {
			t.Errorf("Owns(%q) = %v, want %v", path, got, want)
		}
	}
}
