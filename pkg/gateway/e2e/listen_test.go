package e2e

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// An HTTP listener that cannot bind stops serve with an error naming the
// key and the address: an admin who runs serve without its API or portal
// learns it from the exit, not from a log line that a healthy-looking
// gateway buries.
func TestServeStopsWhenAnHTTPListenerCannotBind(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	for _, tc := range []struct{ key, old, new string }{
		{"http.listen", "[http]\nlisten = \"127.0.0.1:0\"", "[http]\nlisten = \"" + addr + "\""},
		// The portal runs when pdf.password names it.
		{"portal.listen", "[pdf]\npassword = [\"subject\", \"preset\"]", "[portal]\nlisten = \"" + addr + "\"\nurl = \"https://secure.example.test\"\n\n[pdf]\npassword = [\"portal\"]"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			g := newGateway(t, "")
			b, err := os.ReadFile(g.config)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), tc.old) {
				t.Fatalf("config has no %q to replace", tc.old)
			}
			if err := os.WriteFile(g.config, []byte(strings.Replace(string(b), tc.old, tc.new, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			out := serveFails(t, g)
			if want := tc.key + " " + addr; !strings.Contains(out, want) {
				t.Fatalf("serve's error does not name %q:\n%s", want, out)
			}
		})
	}
}

// serveFails runs g's serve and returns its output once it has exited with
// a non-zero status; a serve still running after a minute fails the test.
func serveFails(t *testing.T, g *gw) string {
	t.Helper()
	cmd := exec.Command(sealgateBinary(t), "serve", "--config", g.config)
	cmd.Dir = g.cwd
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("serve kept running:\n%s", out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("serve: %v, want a non-zero exit\n%s", err, out)
	}
	return string(out)
}
