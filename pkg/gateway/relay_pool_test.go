package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// scriptedHost is a smart host whose misbehaviour the test chooses: it
// speaks just enough SMTP for SMTPRelay and records connections, commands
// and messages.
type scriptedHost struct {
	addr string
	// rset answers the RSET on a connection ("" closes the connection
	// without an answer).
	rset func(conn int) string
	// mail answers MAIL FROM number n (1-based) on a connection ("" closes
	// without an answer).
	mail func(conn, n int) string
	// afterDot answers the final dot of message number m overall (1-based;
	// "" closes without an answer, the message counted as received).
	afterDot func(m int) string
	// closeAfterMessage: close the connection after answering each message.
	closeAfterMessage bool
	// ehlo answers EHLO ("" the default: 8BITMIME and SIZE); starttls
	// answers STARTTLS ("" the default: 502). AUTH always gets 235, as a
	// man in the middle collecting passwords would answer.
	ehlo, starttls string

	mu       sync.Mutex
	commands []string // every line the client sent
	conns    int
	quits    int
	rsets    int
	messages []string
}

// hang as a scripted answer: say nothing and keep the connection open
// until the client closes it.
const hang = "hang"

func startScriptedHost(t *testing.T, h *scriptedHost) *scriptedHost {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns++
			n := h.conns
			h.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				h.serve(c, n)
			}()
		}
	}()
	return h
}

func (h *scriptedHost) serve(c net.Conn, conn int) {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	say := func(line string) bool {
		if line == "" {
			return false
		}
		if line == hang {
			_, _ = io.Copy(io.Discard, r) // until the client closes
			return false
		}
		_, err := fmt.Fprintf(c, "%s\r\n", line)
		return err == nil
	}
	say("220 scripted ESMTP")
	mails := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		h.mu.Lock()
		h.commands = append(h.commands, line)
		h.mu.Unlock()
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		ok := true
		switch verb {
		case "EHLO":
			reply := "250-scripted\r\n250-8BITMIME\r\n250 SIZE 10000000"
			if h.ehlo != "" {
				reply = h.ehlo
			}
			ok = say(reply)
		case "STARTTLS":
			reply := "502 5.5.2 not here"
			if h.starttls != "" {
				reply = h.starttls
			}
			ok = say(reply)
		case "AUTH":
			ok = say("235 2.7.0 authenticated")
		case "RSET":
			h.mu.Lock()
			h.rsets++
			h.mu.Unlock()
			reply := "250 2.0.0 reset"
			if h.rset != nil {
				reply = h.rset(conn)
			}
			ok = say(reply) && strings.HasPrefix(reply, "250")
		case "MAIL":
			mails++
			reply := "250 2.1.0 ok"
			if h.mail != nil {
				reply = h.mail(conn, mails)
			}
			ok = say(reply) && !strings.HasPrefix(reply, "421")
		case "RCPT":
			ok = say("250 2.1.5 ok")
		case "DATA":
			say("354 go ahead")
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(l)
			}
			h.mu.Lock()
			h.messages = append(h.messages, msg.String())
			m := len(h.messages)
			h.mu.Unlock()
			reply := "250 2.0.0 queued"
			if h.afterDot != nil {
				reply = h.afterDot(m)
			}
			ok = say(reply) && !h.closeAfterMessage
		case "QUIT":
			h.mu.Lock()
			h.quits++
			h.mu.Unlock()
			say("221 bye")
			return
		default:
			ok = say("502 5.5.2 not here")
		}
		if !ok {
			return
		}
	}
}

// transcript returns every line the client sent.
func (h *scriptedHost) transcript() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.commands...)
}

func (h *scriptedHost) stats() (conns, quits, rsets int, messages []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns, h.quits, h.rsets, append([]string(nil), h.messages...)
}

func poolDelivery(i int) Delivery {
	return Delivery{From: "a@org.test", Rcpts: []string{"b@ext.test"}, Data: []byte(fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i))}
}

// countBodies counts how often each of n messages arrived.
func countBodies(messages []string, n int) []int {
	got := make([]int, n)
	for _, m := range messages {
		m = strings.ReplaceAll(m, "\r\n", "\n")
		for i := 0; i < n; i++ {
			if strings.Contains(m, fmt.Sprintf("body %d\n", i)) {
				got[i]++
			}
		}
	}
	return got
}

// TestSMTPRelayPool sends five messages one after another through one
// relay and checks, per smart-host behaviour, how many connections it took
// and that every message arrived exactly once (none lost, none doubled),
// except where the answer to the final dot was lost: that one arrived once
// and is reported as a temporary failure, not sent again at once.
func TestSMTPRelayPool(t *testing.T) {
	const n = 5
	tests := []struct {
		name      string
		host      *scriptedHost // nil: a well-behaved one
		perConn   int
		wantConns int
		wantFail  []int // message indexes whose delivery reports an error
		wantRSETs int
	}{
		{name: "one connection for all, RSET between messages", wantConns: 1, wantRSETs: n - 1},
		{name: "smart host closes the connection after each message", host: &scriptedHost{closeAfterMessage: true},
			wantConns: n, wantRSETs: 0},
		{name: "4xx on RSET: a fresh connection", host: &scriptedHost{rset: func(int) string { return "451 4.3.0 try later" }},
			wantConns: n, wantRSETs: n - 1},
		{name: "no answer to RSET: a fresh connection", host: &scriptedHost{rset: func(int) string { return "" }},
			wantConns: n, wantRSETs: n - 1},
		{name: "421 on MAIL of a reused connection: retried on a fresh one",
			host: &scriptedHost{mail: func(_, m int) string {
				if m > 1 {
					return "421 4.7.0 too many messages"
				}
				return "250 ok"
			}}, wantConns: n, wantRSETs: n - 1},
		{name: "connection lost at MAIL of a reused connection: retried on a fresh one",
			host: &scriptedHost{mail: func(_, m int) string {
				if m > 1 {
					return ""
				}
				return "250 ok"
			}}, wantConns: n, wantRSETs: n - 1},
		{name: "answer to the final dot lost: reported, not sent again now",
			host: &scriptedHost{afterDot: func(m int) string {
				if m == 2 {
					return ""
				}
				return "250 queued"
			}}, wantConns: 2, wantFail: []int{1}, wantRSETs: n - 2},
		{name: "cap on messages per connection", perConn: 2, wantConns: 3, wantRSETs: n - 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.host
			if h == nil {
				h = &scriptedHost{}
			}
			startScriptedHost(t, h)
			r := &SMTPRelay{Addr: h.addr, Hostname: "gw.test", TLS: "none", Timeout: 5 * time.Second, MaxMessagesPerConn: tc.perConn}
			defer r.Close()
			var failed []int
			for i := 0; i < n; i++ {
				errs := r.Deliver(context.Background(), poolDelivery(i))
				if errs[0] != nil {
					if IsPermanent(errs[0]) {
						t.Errorf("message %d: a connection failure must not bounce: %v", i, errs[0])
					}
					failed = append(failed, i)
				}
			}
			conns, _, rsets, msgs := h.stats()
			if fmt.Sprint(failed) != fmt.Sprint(tc.wantFail) {
				t.Errorf("failed deliveries %v, want %v", failed, tc.wantFail)
			}
			for i, c := range countBodies(msgs, n) {
				if c != 1 {
					t.Errorf("message %d arrived %d times", i, c)
				}
			}
			if conns != tc.wantConns || rsets != tc.wantRSETs {
				t.Errorf("%d connections and %d RSETs, want %d and %d", conns, rsets, tc.wantConns, tc.wantRSETs)
			}
		})
	}
}

func TestSMTPRelayPoolIdleTimeoutAndClose(t *testing.T) {
	quits := func(h *scriptedHost) int { _, q, _, _ := h.stats(); return q }
	t.Run("idle timeout", func(t *testing.T) {
		h := startScriptedHost(t, &scriptedHost{})
		r := &SMTPRelay{Addr: h.addr, TLS: "none", IdleTimeout: 50 * time.Millisecond}
		defer r.Close()
		if errs := r.Deliver(context.Background(), poolDelivery(0)); errs[0] != nil {
			t.Fatal(errs[0])
		}
		waitFor(t, "QUIT of the idle connection", func() bool { return quits(h) == 1 })
		if errs := r.Deliver(context.Background(), poolDelivery(1)); errs[0] != nil {
			t.Fatal(errs[0])
		}
		if conns, _, rsets, _ := h.stats(); conns != 2 || rsets != 0 {
			t.Fatalf("%d connections, %d RSETs after the idle timeout; want 2 and 0", conns, rsets)
		}
	})
	t.Run("close", func(t *testing.T) {
		h := startScriptedHost(t, &scriptedHost{})
		r := &SMTPRelay{Addr: h.addr, TLS: "none", IdleTimeout: time.Hour}
		if errs := r.Deliver(context.Background(), poolDelivery(0)); errs[0] != nil {
			t.Fatal(errs[0])
		}
		r.Close()
		waitFor(t, "QUIT at Close", func() bool { return quits(h) == 1 })
		// After Close deliveries still work, without keeping connections.
		if errs := r.Deliver(context.Background(), poolDelivery(1)); errs[0] != nil {
			t.Fatal(errs[0])
		}
		waitFor(t, "QUIT after a delivery on a closed pool", func() bool { return quits(h) == 2 })
	})
}

// TestSMTPRelayPoolConcurrent: queue workers share the pool; every message
// arrives once and connections are reused.
func TestSMTPRelayPoolConcurrent(t *testing.T) {
	const workers, each = 8, 10
	h := startScriptedHost(t, &scriptedHost{})
	r := &SMTPRelay{Addr: h.addr, TLS: "none", MaxIdle: 4}
	defer r.Close()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if errs := r.Deliver(context.Background(), poolDelivery(w*each+i)); errs[0] != nil {
					t.Error(errs[0])
				}
			}
		}(w)
	}
	wg.Wait()
	conns, _, _, msgs := h.stats()
	for i, c := range countBodies(msgs, workers*each) {
		if c != 1 {
			t.Errorf("message %d arrived %d times", i, c)
		}
	}
	if conns >= workers*each {
		t.Errorf("%d connections for %d messages: no reuse", conns, workers*each)
	}
}

// TestSMTPRelayPoolOverTLSWithAuth: a pooled connection keeps STARTTLS and
// AUTH across RSET (go-smtp's client says EHLO again after RSET).
func TestSMTPRelayPoolOverTLSWithAuth(t *testing.T) {
	serverTLS := selfSigned(t)
	sink := testpeer.StartSink(t, testpeer.SinkOptions{TLS: serverTLS, Users: map[string]string{"gw": "pw"}})
	r := &SMTPRelay{Addr: sink.Addr, Hostname: "gw.test", TLS: "opportunistic", User: "gw", Password: "pw", TLSConf: trusting(t, serverTLS, "gw.test")}
	defer r.Close()
	for i := 0; i < 3; i++ {
		if errs := r.Deliver(context.Background(), poolDelivery(i)); errs[0] != nil {
			t.Fatalf("message %d: %v", i, errs[0])
		}
	}
	for i, m := range sink.Messages() {
		if !m.TLS || m.User != "gw" {
			t.Errorf("message %d: TLS=%v user=%q", i, m.TLS, m.User)
		}
	}
	if len(sink.Messages()) != 3 {
		t.Fatalf("%d messages arrived, want 3", len(sink.Messages()))
	}
}

// TestSMTPRelayPoolPostfixSink: Postfix's smtp-sink as the next hop, once
// as it is and once answering every RSET with 421 and hanging up: all
// messages arrive once either way.
func TestSMTPRelayPoolPostfixSink(t *testing.T) {
	bin := testpeer.Require(t, "smtp-sink")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"plain", nil},
		{"421 on RSET", []string{"-Q", "RSET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// smtp-sink runs as nobody when we are root: the dump directory
			// must be reachable for it, which t.TempDir's parent is not.
			dump, err := os.MkdirTemp("", "sealgate-sink-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dump) })
			if err := os.Chmod(dump, 0o777); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"-d", dump + "/%M."}, tc.args...)
			if os.Geteuid() == 0 {
				args = append(args, "-u", "nobody")
			}
			// smtp-sink binds the port it is given; one taken since it
			// was picked makes it exit, and another port is tried.
			var addr string
			err = testpeer.OnFreePort(func(port int) error {
				addr = fmt.Sprintf("127.0.0.1:%d", port)
				ctx, cancel := context.WithCancel(context.Background())
				cmd := exec.CommandContext(ctx, bin, append(args, addr, "10")...)
				if err := cmd.Start(); err != nil {
					cancel()
					return err
				}
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
					select {
					case err := <-exited:
						cancel()
						return fmt.Errorf("smtp-sink on %s exited (%v): %w", addr, err, syscall.EADDRINUSE)
					default:
					}
					if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
						c.Close()
						t.Cleanup(func() { cancel(); <-exited })
						return nil
					}
					time.Sleep(20 * time.Millisecond)
				}
				cancel()
				<-exited
				return fmt.Errorf("smtp-sink on %s did not listen within 5 s", addr)
			})
			if err != nil {
				t.Fatal(err)
			}
			r := &SMTPRelay{Addr: addr, Hostname: "gw.test", TLS: "none"}
			defer r.Close()
			const n = 5
			for i := 0; i < n; i++ {
				if errs := r.Deliver(context.Background(), poolDelivery(i)); errs[0] != nil {
					t.Fatalf("message %d: %v", i, errs[0])
				}
			}
			files, _ := filepath.Glob(filepath.Join(dump, "*"))
			var msgs []string
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, string(b))
			}
			for i, c := range countBodies(msgs, n) {
				if c != 1 {
					t.Errorf("message %d arrived %d times", i, c)
				}
			}
		})
	}
}

// TestSMTPRelayContextEndsDelivery: a smart host that never answers the
// final dot holds a delivery only until its context ends (shutdown, the
// worker's limit), not for relay.timeout per command.
func TestSMTPRelayContextEndsDelivery(t *testing.T) {
	h := startScriptedHost(t, &scriptedHost{afterDot: func(int) string { return hang }})
	r := &SMTPRelay{Addr: h.addr, TLS: "none", Timeout: time.Minute}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan []error, 1)
	go func() { done <- r.Deliver(ctx, poolDelivery(0)) }()
	select {
	case errs := <-done:
		if errs[0] == nil || IsPermanent(errs[0]) {
			t.Fatalf("err = %v, want a temporary failure", errs[0])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("delivery still waiting 20 s after its context ended")
	}
	if len(r.idle().Conns()) != 0 {
		t.Fatal("the connection of a cancelled delivery went back to the pool")
	}
}

// TestSMTPRelayContextEndsRSET: the check of a pooled connection is bound
// by the delivery's context too.
func TestSMTPRelayContextEndsRSET(t *testing.T) {
	h := startScriptedHost(t, &scriptedHost{rset: func(int) string { return hang }})
	r := &SMTPRelay{Addr: h.addr, TLS: "none", Timeout: time.Minute}
	defer r.Close()
	if errs := r.Deliver(context.Background(), poolDelivery(0)); errs[0] != nil {
		t.Fatal(errs[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	errs := r.Deliver(ctx, poolDelivery(1))
	if errs[0] == nil || IsPermanent(errs[0]) {
		t.Fatalf("err = %v, want a temporary failure", errs[0])
	}
	if waited := time.Since(start); waited > 20*time.Second {
		t.Fatalf("waited %v for an RSET after the context ended", waited)
	}
	if _, _, _, msgs := h.stats(); len(msgs) != 1 {
		t.Fatalf("%d messages arrived, want 1", len(msgs))
	}
}
