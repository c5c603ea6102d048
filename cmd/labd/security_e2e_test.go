package main

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestExposureNeedsAuthentication: labd refuses to serve its API or its
// NATS where other machines reach them without a password, unless told
// to, and says why.
func TestExposureNeedsAuthentication(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--host", "0.0.0.0"}, "--host 0.0.0.0 is reachable from other machines"},
		{[]string{"--host", ""}, "is reachable from other machines"},
		{[]string{"--nats-listen", "0.0.0.0:0"}, "--nats-listen 0.0.0.0:0 is reachable from other machines"},
		{[]string{"--nova-listen", "0.0.0.0:0"}, "--nova-listen 0.0.0.0:0 is reachable from other machines: give --nova-tokens"},
		{[]string{"--danube-listen", "0.0.0.0:0"}, "--danube-listen 0.0.0.0:0 is reachable from other machines: give --danube-keys"},
		{[]string{"--e24-listen", "0.0.0.0:0"}, "--e24-listen 0.0.0.0:0 is reachable from other machines: give --e24-keys"},
		{[]string{"--danube-keys", "/dev/null"}, "danube keys: the table is empty"},
		{[]string{"--e24-keys", "/dev/null"}, "e24 keys: the table is empty"},
		{[]string{"--auth-user", "admin"}, "needs a password"},
		{[]string{"--auth-password-file", "/dev/null"}, "--auth-password-file needs --auth-user"},
		{[]string{"--qemu-allow-option", "nosuchoption"}, `"nosuchoption" is not a QEMU option`},
		{[]string{"--allow-origin", "evil.example"}, "is not an origin"},
	} {
		cmd := exec.Command(labdBinary(t), append([]string{"serve", "--data-dir", t.TempDir(), "--port", "0"}, tc.args...)...)
		cmd.Env = append(os.Environ(), passwordEnv+"=")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("labd serve %q: %v, want a non-zero exit\n%s", tc.args, err, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Fatalf("labd serve %q says %q, want it to say %q", tc.args, out, tc.want)
		}
	}
	// --no-auth serves anyway, with a warning.
	d := startLabd(t, t.TempDir(), "--host", "0.0.0.0", "--no-auth")
	if !strings.Contains(strings.Join(d.log(), "\n"), "serving without authentication") {
		t.Fatal("--no-auth logged no warning")
	}
}

// TestAuthenticationThroughTheBinary: labd on all addresses with a user
// and a password file answers 401 without them and 200 with them; its NATS
// lets that user read the history and refuses to let it write events.
func TestAuthenticationThroughTheBinary(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startLabd(t, t.TempDir(), "--host", "0.0.0.0", "--auth-user", "admin", "--auth-password-file", pwFile,
		"--nats-listen", "127.0.0.1:0")
	api := strings.Replace(d.URL, "://0.0.0.0:", "://127.0.0.1:", 1)
	api = strings.Replace(api, "://[::]:", "://127.0.0.1:", 1)
	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", api+"/v2/compute/version", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get("", ""); s != 401 {
		t.Errorf("no credentials: %d", s)
	}
	if s := get("admin", "s3cre"); s != 401 {
		t.Errorf("wrong password: %d", s)
	}
	if s := get("admin", "s3cret"); s != 200 {
		t.Errorf("right credentials: %d", s)
	}

	var natsURL string
	for _, l := range d.log() {
		if m := natsURLLine.FindStringSubmatch(l); m != nil {
			natsURL = m[1]
		}
	}
	if _, err := nats.Connect(natsURL, nats.Timeout(2*time.Second)); err == nil {
		t.Fatal("NATS took a client without credentials")
	}
	nc, err := nats.Connect(natsURL, nats.UserInfo("admin", "s3cret"))
	if err != nil {
		t.Fatalf("NATS refused the API user: %v", err)
	}
	defer nc.Close()
	events := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("labd.ev.>", events); err != nil {
		t.Fatal(err)
	}
	denied := make(chan error, 1)
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { denied <- err })
	if err := nc.Publish("labd.ev.e2e.forged.project", []byte(`{"type":"project.deleted"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-denied:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("forged event: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("NATS did not refuse the API user's forged event")
	}
	req, _ := http.NewRequest("POST", api+"/v2/compute/projects", strings.NewReader(`{"name": "watched"}`))
	req.SetBasicAuth("admin", "s3cret")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v %v", resp, err)
	}
	for {
		select {
		case m := <-events:
			if strings.Contains(string(m.Data), `"watched"`) {
				// The tools read the history as that user too.
				url := strings.Replace(natsURL, "nats://", "nats://admin:s3cret@", 1)
				out, err := exec.Command(labdBinary(t), "replay", "--nats-url", url, "--compute-id", "e2e").CombinedOutput()
				if err != nil || !strings.Contains(string(out), "watched") {
					t.Fatalf("labd replay as the API user: %v\n%s", err, out)
				}
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the API user saw no event of the create")
		}
	}
}
