package e2e

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeNotifiesSystemd: as a Type=notify unit, serve sends READY=1
// only once it accepts mail (the SMTP port answers), and STOPPING=1 when
// it begins to shut down, on the socket systemd names in NOTIFY_SOCKET.
func TestServeNotifiesSystemd(t *testing.T) {
	t.Parallel()
	g := newGateway(t, "")
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := exec.Command(sealgateBinary(t), "serve", "--config", g.config)
	cmd.Env = append(cmd.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = syncWriter{g.logMu, g.log}, syncWriter{g.logMu, g.log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	read := func() string {
		t.Helper()
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("no notification: %v\n%s", err, tail(g.logText(), 20))
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	// serve logs "listening" before it sends READY=1, but the log reaches
	// this test through a pipe that may lag the datagram: wait for the line,
	// never for the listener.
	var smtp string
	for deadline := time.Now().Add(10 * time.Second); smtp == "" && time.Now().Before(deadline); {
		if smtp, _ = listeningAddrs(g.logText()); smtp == "" {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if smtp == "" {
		t.Fatalf("serve sent READY=1 but never logged its listener\n%s", tail(g.logText(), 20))
	}
	c, err := net.DialTimeout("tcp", smtp, 5*time.Second)
	if err != nil {
		t.Fatalf("READY=1 came before the SMTP listener accepts: %v", err)
	}
	banner := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := c.Read(banner)
	c.Close()
	if !strings.HasPrefix(string(banner[:n]), "220 ") {
		t.Fatalf("banner after READY=1: %q", banner[:n])
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("notification at SIGTERM %q, want STOPPING=1", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
}
