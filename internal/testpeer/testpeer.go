// Package testpeer starts and drives the real programs that check
// sealgate's output in tests: openssl, gpgsm, NSS cmsutil, qpdf, poppler,
// slapd, swaks, Postfix, Exim, unbound, Knot DNS. Nobody here wrote them,
// which is the point.
//
// A missing peer skips the test on a developer machine and fails it under
// CI=true, so a green CI always means the peers ran.
package testpeer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the suite runs in CI, where every peer must exist.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require returns the full path of program, or skips (fails in CI) the
// test when it is not installed.
func Require(t testing.TB, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/lib/postfix/sbin"} {
		cand := dir + "/" + program
		if st, err := os.Stat(cand); err == nil && !st.IsDir() {
			return cand
		}
	}
	if InCI() {
		t.Fatalf("peer %s is not installed (run `make test`, which installs it)", program)
	}
	t.Skipf("peer %s is not installed; `make test` installs it", program)
	return ""
}

// Result is what a peer program printed and how it exited.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Run runs program with args and stdin, with a timeout, and returns its
// output whatever the exit code. It fails the test only when the program
// cannot be started.
func Run(t testing.TB, stdin []byte, program string, args ...string) Result {
	t.Helper()
	return RunEnv(t, nil, stdin, program, args...)
}

// RunEnv is Run with extra environment variables ("K=V").
func RunEnv(t testing.TB, env []string, stdin []byte, program string, args ...string) Result {
	t.Helper()
	path := Require(t, program)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			res.ExitCode = ee.ExitCode()
		} else {
			t.Fatalf("running %s %s: %v", program, strings.Join(args, " "), err)
		}
	}
	return res
}

// MustRun is Run that fails the test on a non-zero exit, showing stderr.
func MustRun(t testing.TB, stdin []byte, program string, args ...string) []byte {
	t.Helper()
	res := Run(t, stdin, program, args...)
	if res.ExitCode != 0 {
		t.Fatalf("%s %s: exit %d\n%s", program, strings.Join(args, " "), res.ExitCode, res.Stderr)
	}
	return res.Stdout
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Packages run in parallel, so another server can take it before ours
// binds it: a server we write binds :0 and reports its port instead, and
// an external daemon that cannot is started with OnFreePort.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pickPort is how OnFreePort picks; tests hand out a taken port with it.
var pickPort = freePort

// portAttempts bounds OnFreePort: each lost race is rare, several in a
// row mean something else is wrong.
const portAttempts = 5

// OnFreePort starts an external daemon with start(port) on free ports
// until it starts, or fails for another reason than the port having been
// taken since it was picked (then that error is returned). start must
// report a lost port as an error containing "Address already in use" (the
// daemons' wording) or wrapping EADDRINUSE, and must not report success
// on a port that another process answers.
func OnFreePort(start func(port int) error) error {
	var err error
	for range portAttempts {
		var port int
		if port, err = pickPort(); err != nil {
			return fmt.Errorf("free port: %w", err)
		}
		if err = start(port); err == nil || !portTaken(err) {
			return err
		}
	}
	return fmt.Errorf("%d free ports in a row were taken before the daemon bound them: %w", portAttempts, err)
}

// portTaken reports whether err says a daemon could not bind its port.
func portTaken(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(strings.ToLower(err.Error()), "address already in use")
}

// WaitPort waits until something accepts TCP connections on addr.
func WaitPort(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after %v", addr, timeout)
}
