package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// send delivers one message on an open client and returns the queue id
// from the 250 reply ("" when the gateway did not accept it).
func send(c *smtp.Client, from, to, body string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	_, id, ok := strings.Cut(resp.StatusText, "OK: queued as ")
	if !ok {
		return "", fmt.Errorf("unexpected 250 text %q", resp.StatusText)
	}
	return id, nil
}

// TestKill9LosesNothing kills sealgate with SIGKILL while sessions are
// sending, restarts it, and checks that every message that got a 250 is
// delivered.
func TestKill9LosesNothing(t *testing.T) {
	const sessions, perSession = 20, 50
	g := newGateway(t, "")
	g.start()
	var (
		mu       sync.Mutex
		accepted []string
		count    atomic.Int32
		wg       sync.WaitGroup
	)
	killed := make(chan struct{})
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			c, err := smtp.Dial(g.addr)
			if err != nil {
				return
			}
			defer c.Close()
			for i := 0; i < perSession; i++ {
				body := fmt.Sprintf("From: alice@example.org\r\nTo: bob@example.org\r\nSubject: m %d-%d\r\n\r\n%s\r\n", s, i, strings.Repeat("x", 2000)+"\r\n"+strings.Repeat("y", 8000))
				id, err := send(c, "alice@example.org", "bob@example.org", body)
				if err != nil {
					if count.Load() < sessions*perSession/2 {
						t.Logf("session %d: %v", s, err)
					}
					return // the gateway died under us: this one was never 250'd
				}
				mu.Lock()
				accepted = append(accepted, id)
				mu.Unlock()
				if count.Add(1) == sessions*perSession/2 {
					g.cmd.Process.Kill() // SIGKILL: no cleanup at all
					close(killed)
				}
			}
		}(s)
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatalf("never reached half the messages; log:\n%s", tail(g.logText(), 5))
	}
	g.cmd.Wait()
	wg.Wait()
	t.Logf("%d messages got a 250 before the kill", len(accepted))

	g.start()
	missing := 0
	waitUntil(t, 60*time.Second, func() bool {
		missing = 0
		for _, id := range accepted {
			if _, err := os.Stat(filepath.Join(g.dir, "outbox", id+"-0.eml")); err != nil {
				missing++
			}
		}
		return missing == 0
	}, func() string {
		return fmt.Sprintf("%d of %d accepted messages never delivered; log tail:\n%s", missing, len(accepted), tail(g.logText(), 20))
	})
	files, _ := filepath.Glob(filepath.Join(g.dir, "outbox", "*.eml"))
	t.Logf("delivered files: %d (accepted %d; redeliveries overwrite their own file)", len(files), len(accepted))
	recovered := strings.Count(g.logText(), "recovered spooled message")
	t.Logf("spool files recovered without a queue entry: %d", recovered)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestNextHopDown: with the smart host down, messages wait in the queue
// and go out once it is back.
func TestNextHopDown(t *testing.T) {
	sink := testpeer.StartSink(t, testpeer.SinkOptions{})
	addr := sink.Addr
	sink.Close()
	g := newGateway(t, "")
	g.editConfig(`mode = "dir"`, fmt.Sprintf("mode = \"smarthost\"\nsmarthost = %q\ntls = \"none\"\nretry_backoff = \"500ms\"", addr))
	g.start()
	c, err := smtp.Dial(g.addr)
	if err != nil {
		t.Fatal(err)
	}
	const messages = 5
	for i := range messages {
		if _, err := send(c, "alice@example.org", "bob@example.org", fmt.Sprintf("From: alice@example.org\r\nSubject: wait %d\r\n\r\nbody\r\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	// Each attempt records one deferral per message: ten mean every
	// message was retried while the next hop was still down, so what
	// delivers them below is a retry from the queue, not the first try.
	deferrals := func() int { return strings.Count(g.logText(), `"outcome":"deferred"`) }
	waitUntil(t, 20*time.Second, func() bool { return deferrals() >= 2*messages }, func() string {
		return fmt.Sprintf("%d deferrals, want %d (two attempts per message):\n%s", deferrals(), 2*messages, g.logText())
	})
	back := testpeer.StartSink(t, testpeer.SinkOptions{Addr: addr})
	back.WaitMessages(t, messages, 30*time.Second)
}
