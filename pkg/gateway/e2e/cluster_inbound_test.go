package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// inboundClusterNode is clusterNode with the [inbound] listener, whose next
// hop is inNextHop; outbound mail goes to the smart host outNextHop.
func inboundClusterNode(t *testing.T, name, dsn, masterKey, outNextHop, inNextHop string) *gw {
	g := newGatewayRules(t, plainRules, fmt.Sprintf("[store]\ndriver = \"postgres\"\ndsn = %q\nlease_timeout = \"5s\"\n\n[inbound]\nlisten = \"127.0.0.1:0\"\nnext_hop = %q\nnext_hop_tls = \"none\"\n",
		dsn, inNextHop))
	g.editConfig(`hostname = "gw.example.org"`, fmt.Sprintf("hostname = %q", name))
	g.editConfig(`issuer = "embedded"`, fmt.Sprintf("issuer = \"embedded\"\nmaster_key_file = %q", masterKey))
	g.editConfig(`mode = "dir"`, fmt.Sprintf("mode = \"smarthost\"\nsmarthost = %q\ntls = \"none\"\nretry_backoff = \"1s\"", outNextHop))
	return g
}

// gateListener holds every connection it accepts until Open: the next hop
// does not even greet, so a node delivering to it waits mid-delivery,
// holding its leases. Open closes the held connections (their node is
// dead by then) and lets later ones through.
type gateListener struct {
	net.Listener
	mu   sync.Mutex
	open bool
	held []net.Conn
}

func (g *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		if g.open {
			g.mu.Unlock()
			return c, nil
		}
		g.held = append(g.held, c)
		g.mu.Unlock()
	}
}

func (g *gateListener) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = true
	for _, c := range g.held {
		c.Close()
	}
	g.held = nil
}

func (g *gateListener) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// TestClusterInboundNodeDies: two `sealgate serve` nodes with [inbound] on
// one real PostgreSQL. Node a accepts inbound mail and starts delivering
// it to the internal next hop, which does not answer yet; node a is killed
// with SIGKILL mid-delivery. `queue list` on node b shows a's entries in
// lane inbound, and once a's leases run out node b's inbound queue
// delivers them to the inbound next hop, each once; node b's outbound
// queue (another relay) never sends one of them.
func TestClusterInboundNodeDies(t *testing.T) {
	pg := testpeer.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	outSink := testpeer.StartSink(t, testpeer.SinkOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gate := &gateListener{Listener: ln}
	t.Cleanup(gate.Open)
	inSink := testpeer.StartSink(t, testpeer.SinkOptions{Listener: gate})
	key := filepath.Join(t.TempDir(), "master.key")
	a := inboundClusterNode(t, "node-a.example.org", dsn, key, outSink.Addr, inSink.Addr)
	b := inboundClusterNode(t, "node-b.example.org", dsn, key, outSink.Addr, inSink.Addr)
	sealgateBinary(t) // built before the clock starts
	began := time.Now()
	a.start() // creates the master key and the CA; b then shares both
	shareCA(t, a, b)
	b.start()
	t.Logf("both nodes listening after %v", time.Since(began).Round(time.Millisecond))
	logs := func() string { return "node a:\n" + tail(a.logText(), 15) + "\nnode b:\n" + tail(b.logText(), 15) }
	aIn := inboundAddr(a.logText())
	if aIn == "" {
		t.Fatalf("node a logged no inbound address:\n%s", logs())
	}
	idA := a.nodeID(t)

	const k = 3
	c, err := smtp.Dial(aIn)
	if err != nil {
		t.Fatal(err)
	}
	subjects := map[string]bool{}
	for i := range k {
		subject := fmt.Sprintf("inbound-%d", i)
		body := fmt.Sprintf("From: carol@partner.test\r\nTo: alice@example.org\r\nSubject: %s\r\nMessage-ID: <%s@partner.test>\r\n\r\nFor Alice.\r\n", subject, subject)
		if _, err := send(c, "carol@partner.test", "alice@example.org", body); err != nil {
			t.Fatalf("node a's inbound listener: %v", err)
		}
		subjects[subject] = true
	}
	c.Close()
	// Node a is delivering (connected to the next hop, no greeting yet).
	waitUntil(t, 30*time.Second, func() bool { return gate.Held() > 0 },
		func() string { return "node a never connected to the inbound next hop:\n" + logs() })
	a.cmd.Process.Kill() // SIGKILL: mid-delivery, leases left behind
	a.cmd.Wait()
	killed := time.Now()

	// Cluster-wide, from node b: a's inbound entries, in lane inbound.
	entries := b.queueEntries(t)
	inbound := 0
	for _, e := range entries {
		if e.Lane == "inbound" {
			inbound++
			if e.Node != idA {
				t.Errorf("inbound entry %s names node %q, want node a (%s)", e.ID, e.Node, idA)
			}
		}
	}
	if inbound != k {
		t.Errorf("queue list on node b shows %d inbound entries, want %d: %+v", inbound, k, entries)
	}

	gate.Open()
	waitUntil(t, 60*time.Second, func() bool {
		n := 0
		for _, m := range inSink.Messages() {
			if s := subjectOf(m.Data); subjects[s] {
				n++
			}
		}
		return n >= k
	}, func() string { return "node b did not deliver node a's inbound mail:\n" + logs() })
	t.Logf("node b delivered node a's %d inbound messages %v after the kill (lease_timeout 5s); %v in all",
		k, time.Since(killed).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	waitQueueEmpty(t, b, logs)
	got := map[string]int{}
	for _, m := range inSink.Messages() {
		s := subjectOf(m.Data)
		if !subjects[s] {
			continue
		}
		got[s]++
		if m.Helo != "node-b.example.org" {
			t.Errorf("%s delivered by %q, want node b", s, m.Helo)
		}
		if !m.HasRcpt("alice@example.org") {
			t.Errorf("%s delivered to %v", s, m.Rcpts)
		}
	}
	for s := range subjects {
		if got[s] != 1 {
			t.Errorf("%s reached the inbound next hop %d times, want once", s, got[s])
		}
	}
	for _, m := range outSink.Messages() {
		if subjects[subjectOf(m.Data)] {
			t.Errorf("inbound %s left through the outbound relay", subjectOf(m.Data))
		}
	}
	if !strings.Contains(b.logText(), "delivering a message accepted by another node") {
		t.Error("node b's log does not say it delivered another node's message")
	}
}

// subjectOf is the Subject of a message's header, or "".
func subjectOf(data []byte) string {
	hdr := string(data)
	if i := strings.Index(hdr, "\r\n\r\n"); i >= 0 {
		hdr = hdr[:i]
	}
	for _, line := range strings.Split(hdr, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Subject: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
