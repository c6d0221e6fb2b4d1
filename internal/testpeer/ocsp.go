package testpeer

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// OCSPResponder is a running `openssl ocsp` responder process answering
// from an `openssl ca` index file.
type OCSPResponder struct {
	// URL is where clients send requests (http://127.0.0.1:port).
	URL string
}

// OCSPResponderOptions are the files the responder reads.
type OCSPResponderOptions struct {
	Index       string // `openssl ca` database (V/R lines by serial)
	CA          string // PEM of the CA whose certificates it answers for
	SignerCert  string // PEM certificate signing the answers (-rsigner)
	SignerKey   string // its PEM key (-rkey)
	MaxRequests int    // -nrequest: it exits after this many; 0 = 100
	// Extra arguments, say "-nmin", "5" for a nextUpdate.
	Extra []string
}

// acceptLine is what openssl prints once its socket is bound.
var acceptLine = regexp.MustCompile(`^ACCEPT .*:(\d+) PID=\d+`)

// StartOCSPResponder runs `openssl ocsp -port 0`: openssl binds a free
// port itself and prints it (no pick-then-bind race). OpenSSL 3.0's -port
// takes only a number, so it listens on every interface; clients are
// pointed at loopback. Its lifetime is bounded three ways: -nrequest, a
// kill at cleanup, and SIGKILL if the test process dies first.
func StartOCSPResponder(t testing.TB, o OCSPResponderOptions) *OCSPResponder {
	t.Helper()
	path := Require(t, "openssl")
	if o.MaxRequests == 0 {
		o.MaxRequests = 100
	}
	args := append([]string{"ocsp", "-port", "0", "-index", o.Index, "-CA", o.CA,
		"-rsigner", o.SignerCert, "-rkey", o.SignerKey, "-nrequest", strconv.Itoa(o.MaxRequests)}, o.Extra...)
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout // the ACCEPT line goes to either, depending on the build
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting openssl ocsp: %v", err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	port := make(chan string, 1)
	var seen []string
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := acceptLine.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			} else if len(seen) < 20 {
				seen = append(seen, sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(port)
	}()
	select {
	case p, ok := <-port:
		if !ok {
			<-exited
			t.Fatalf("openssl ocsp %v exited before listening: %v", args, seen)
		}
		return &OCSPResponder{URL: fmt.Sprintf("http://127.0.0.1:%s", p)}
	case <-time.After(30 * time.Second):
		t.Fatalf("openssl ocsp printed no ACCEPT line within 30s")
	}
	return nil
}
