package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// plainRules send everything as it is: the cluster test is about the
// queue, not about signing (which would cost the CPU it needs).
const plainRules = `[[policy.rules]]
name = "plain"
sign = "never"
encrypt = "none"
`

// clusterMessages is how many messages each phase of the cluster test
// sends: the 2,000 by default; `make soak-cluster` sends more
// (SEALGATE_CLUSTER_MESSAGES).
func clusterMessages(t *testing.T) int {
	if v := os.Getenv("SEALGATE_CLUSTER_MESSAGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 20 {
			t.Fatalf("SEALGATE_CLUSTER_MESSAGES=%q: want a number >= 20", v)
		}
		return n
	}
	return 2000
}

const (
	// clusterSessions is how many SMTP sessions submit at once. Every
	// message waits on a chain of processes (client, node, PostgreSQL,
	// node, sink) and on a busy machine each hop waits for a CPU: the
	// throughput comes from messages in flight (submitting 2,000 took
	// 71 s with 8 sessions and 27 s with 32 in one profiling run).
	clusterSessions = 16
	// clusterBodyLines keeps the messages small (about 400 bytes of
	// body): the test is about the queue, and every byte is sealed,
	// stored, read back and relayed.
	clusterBodyLines = 20
)

// clusterNode is a gateway node of the test cluster: its own data_dir and
// host name, the shared database, master key and next hop.
func clusterNode(t *testing.T, name, dsn, masterKey, sink string) *gw {
	g := newGatewayRules(t, plainRules, fmt.Sprintf("[store]\ndriver = \"postgres\"\ndsn = %q\nlease_timeout = %q\n", dsn, clusterLease.String()))
	g.editConfig(`hostname = "gw.example.org"`, fmt.Sprintf("hostname = %q", name))
	g.editConfig(`issuer = "embedded"`, fmt.Sprintf("issuer = \"embedded\"\nmaster_key_file = %q", masterKey))
	g.editConfig(`mode = "dir"`, fmt.Sprintf("mode = \"smarthost\"\nsmarthost = %q\ntls = \"none\"\nretry_backoff = \"1s\"", sink))
	// ECDSA user keys: an RSA key generated at each start costs seconds
	// of CPU on a busy machine, and nothing here signs.
	g.editConfig(`key_type = "rsa2048"`, `key_type = "p256"`)
	return g
}

// shareCA gives node to the embedded CA that node from created: the nodes
// of a cluster issue from one CA, and to need not generate its own two
// RSA-3072 keys (seconds of CPU) at its first start.
func shareCA(t *testing.T, from, to *gw) {
	t.Helper()
	src, dst := filepath.Join(from.dir, "data", "ca"), filepath.Join(to.dir, "data", "ca")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

func (g *gw) nodeID(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(g.dir, "data", "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

var subjectRE = regexp.MustCompile(`(?m)^Subject: (c\d+-\d+-\d+)\r?$`)

// clusterSubject is the test subject of m ("" if it has none).
func clusterSubject(m testpeer.SinkMessage) string {
	hdr := m.Data
	if i := bytes.Index(hdr, []byte("\r\n\r\n")); i >= 0 {
		hdr = hdr[:i+2]
	}
	if s := subjectRE.FindSubmatch(hdr); s != nil {
		return string(s[1])
	}
	return ""
}

// copies counts what the sink got by subject, and by which node (HELO).
func copies(sink *testpeer.Sink) (bySubject map[string]int, byNode map[string][]string) {
	bySubject, byNode = map[string]int{}, map[string][]string{}
	for _, m := range sink.Messages() {
		if s := clusterSubject(m); s != "" {
			bySubject[s]++
			byNode[s] = append(byNode[s], m.Helo)
		}
	}
	return bySubject, byNode
}

// load sends n messages through the nodes from several sessions, each
// with a subject of its own, and returns the subjects that got a 250.
// target picks a session's node for each message (it may change when a
// node dies); after is called with the running count of 250s.
type load struct {
	phase    int
	sessions int
	target   func(session int) string
	after    func(accepted int64)
}

func (l load) run(t *testing.T, n int) map[string]bool {
	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		count    atomic.Int64
		failed   atomic.Int64
		wg       sync.WaitGroup
	)
	per := n / l.sessions
	for s := range l.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtp.Client
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for i := 0; i < per; {
				if c == nil {
					var err error
					if c, err = smtp.Dial(l.target(s)); err != nil {
						c = nil
						time.Sleep(200 * time.Millisecond)
						continue
					}
				}
				subject := fmt.Sprintf("c%d-%d-%d", l.phase, s, i)
				body := fmt.Sprintf("From: alice@example.org\r\nTo: bob@partner.test\r\nSubject: %s\r\n\r\n%s\r\n", subject, strings.Repeat("cluster body line\r\n", clusterBodyLines))
				i++ // a message that failed is not sent again under its subject
				if _, err := send(c, "alice@example.org", "bob@partner.test", body); err != nil {
					// The node died, or the database is down (451): never
					// acknowledged. Start over on a new connection.
					failed.Add(1)
					c.Close()
					c = nil
					time.Sleep(100 * time.Millisecond)
					continue
				}
				mu.Lock()
				accepted[subject] = true
				mu.Unlock()
				if l.after != nil {
					l.after(count.Add(1))
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("phase %d: %d of %d messages got a 250, %d did not", l.phase, len(accepted), l.sessions*per, failed.Load())
	return accepted
}

// deliveryTimeout bounds the wait for the backlog after a phase's load:
// the sessions submit faster than the nodes deliver on a busy machine, so
// it grows with the messages sent (190 s for 2,000). The wait ends as
// soon as the last one arrives.
func deliveryTimeout(n int) time.Duration {
	return 90*time.Second + time.Duration(n)*50*time.Millisecond
}

// waitDelivered waits until the sink has every accepted subject. It wakes
// on each arrival (no polling) and reads each message once: rescanning
// thousands of messages every few milliseconds would take the CPU the
// nodes need.
func waitDelivered(t *testing.T, sink *testpeer.Sink, accepted map[string]bool, timeout time.Duration, logs func() string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := map[string]bool{}
	missing, read := len(accepted), 0
	for {
		msgs, more := sink.Next(read)
		read += len(msgs)
		for _, m := range msgs {
			if s := clusterSubject(m); accepted[s] && !seen[s] {
				seen[s] = true
				missing--
			}
		}
		if missing == 0 {
			return
		}
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("after %v: %d of %d acknowledged messages never reached the next hop; logs:\n%s", timeout, missing, len(accepted), logs())
		}
	}
}

// clusterLease is the nodes' store.lease_timeout: short, so that node b
// takes over node a's messages soon after the kill.
const clusterLease = 5 * time.Second

// TestClusterTwoNodesOnePostgres: two `sealgate serve` processes on one
// real PostgreSQL. Phase 1 kills one with SIGKILL in the middle of the
// load: the other delivers its mail once the dead node's leases run out.
// Phase 2 restarts PostgreSQL under load: both nodes reconnect, every
// acknowledged message goes out, and nothing is acknowledged that was not
// committed (it would be missing). Duplicates are counted and explained.
func TestClusterTwoNodesOnePostgres(t *testing.T) {
	begin := time.Now()
	// step logs the time each step took so far: where the test spends it.
	step := func(what string) { t.Logf("%-32s at %v", what, time.Since(begin).Round(time.Millisecond)) }
	pg := testpeer.StartPostgres(t)
	step("PostgreSQL up")
	dsn := pg.NewDatabase(t)
	sink := testpeer.StartSink(t, testpeer.SinkOptions{})
	key := filepath.Join(t.TempDir(), "master.key")
	a := clusterNode(t, "node-a.example.org", dsn, key, sink.Addr)
	b := clusterNode(t, "node-b.example.org", dsn, key, sink.Addr)
	a.start() // creates the master key and the CA; b then shares them
	shareCA(t, a, b)
	b.start()
	step("both nodes listening")
	idA := a.nodeID(t)
	logs := func() string { return "node a:\n" + tail(a.logText(), 15) + "\nnode b:\n" + tail(b.logText(), 15) }
	n := clusterMessages(t)
	started := time.Now()

	// Phase 1: kill -9 node a at half the load; its sessions move to b.
	var aDead atomic.Bool
	var killOnce sync.Once
	killed := make(chan struct{})
	// Right after the kill, while both nodes' leases are live, queue list
	// (cluster-wide, from node b's config) names the node working on each
	// entry.
	listed := make(chan []queueEntry, 1)
	accepted1 := load{phase: 1, sessions: clusterSessions,
		target: func(s int) string {
			if s%2 == 0 && !aDead.Load() {
				return a.addr
			}
			return b.addr
		},
		after: func(c int64) {
			if c == int64(n/2) {
				killOnce.Do(func() {
					aDead.Store(true)
					a.cmd.Process.Kill() // SIGKILL: no cleanup, leases left behind
					close(killed)
					go func() {
						var entries []queueEntry
						out, err := exec.Command(sealgateBinary(t), "queue", "list", "-o", "json", "--config", b.config).Output()
						if err == nil {
							_ = json.Unmarshal(out, &entries)
						}
						listed <- entries
					}()
				})
			}
		}}.run(t, n)
	step("phase 1 submitted")
	<-killed
	a.cmd.Wait()
	heldBy := map[string]int{}
	snapshot := <-listed
	for _, e := range snapshot {
		heldBy[e.LeaseNode]++
	}
	t.Logf("queue list right after the kill: %d entries; by lease holder: %v (dead node %s)", len(snapshot), heldBy, idA)
	if len(snapshot) > 0 && len(snapshot) == heldBy[""] {
		t.Errorf("queue list under load named no node working on any entry: %+v", snapshot)
	}
	waitDelivered(t, sink, accepted1, deliveryTimeout(n), logs)
	step("phase 1 delivered")
	// The dead node's leases run out and node b finishes its work: only
	// then is every duplicate there to count.
	waitQueueEmpty(t, b, logs)
	step("phase 1 queue empty")
	got, nodes := copies(sink)
	dups := 0
	for s, k := range got {
		if k < 2 {
			continue
		}
		dups++
		// The only way to a second copy: node a handed it to the next hop
		// and died before its commit removed it; node b took it over when
		// the lease ran out.
		fromA, fromB := 0, 0
		for _, h := range nodes[s] {
			switch h {
			case "node-a.example.org":
				fromA++
			case "node-b.example.org":
				fromB++
			}
		}
		if k != 2 || fromA != 1 || fromB != 1 {
			t.Errorf("%s: %d copies (from a %d, from b %d): a duplicate must be one copy of the dead node and one of the node that took over", s, k, fromA, fromB)
		}
	}
	// At most what node a had in flight at the kill (its 16 workers).
	if dups > 16 {
		t.Errorf("%d duplicates: more than node a can have had in flight (16 workers)", dups)
	}
	unacked := 0
	for s := range got {
		if !accepted1[s] {
			unacked++
		}
	}
	t.Logf("phase 1: %d acknowledged messages delivered in %v; %d duplicates (sent by node a, which died before committing; resent by node b after the lease); %d delivered without a 250 (committed, the 250 lost with node a)",
		len(accepted1), time.Since(started).Round(time.Millisecond), dups, unacked)
	t.Logf("node b delivered %d messages accepted by node a", strings.Count(b.logText(), "delivering a message accepted by another node"))

	// Phase 2: node a back (same data_dir, same node id); PostgreSQL
	// restarts a third of the way in.
	a.start()
	step("node a back")
	if a.nodeID(t) != idA {
		t.Fatal("node a came back with another node id")
	}
	started = time.Now()
	restarted := make(chan error, 1)
	var outage time.Duration // stop to answering again, an upper bound
	var restartOnce sync.Once
	accepted2 := load{phase: 2, sessions: clusterSessions,
		target: func(s int) string {
			if s%2 == 0 {
				return a.addr
			}
			return b.addr
		},
		after: func(c int64) {
			if c == int64(n/3) {
				restartOnce.Do(func() {
					go func() {
						t0 := time.Now()
						err := pg.Restart(time.Second)
						outage = time.Since(t0)
						restarted <- err
					}()
				})
			}
		}}.run(t, n)
	step("phase 2 submitted")
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, sink, accepted2, deliveryTimeout(n), logs)
	step("phase 2 delivered")
	got, _ = copies(sink)
	dups2 := 0
	for s := range accepted2 {
		if got[s] > 1 {
			dups2++
		}
	}
	t.Logf("phase 2: %d acknowledged messages delivered in %v across a PostgreSQL restart of at most %v; %d duplicates",
		len(accepted2), time.Since(started).Round(time.Millisecond), outage.Round(time.Millisecond), dups2)
	// No node died: a delivery's outcome is written again until the
	// database takes it, within the lease. Only an outage longer than the
	// lease (a loaded machine can take that long to stop and start
	// PostgreSQL) lets the other node take over a message whose delivery
	// was under way: then each such message was in flight at one of the
	// two nodes (16 workers each).
	switch {
	case outage < clusterLease && dups2 > 0:
		t.Errorf("%d duplicates across a database restart (%v) shorter than the lease (%v)", dups2, outage, clusterLease)
	case dups2 > 2*16:
		t.Errorf("%d duplicates: more than both nodes can have had in flight (16 workers each)", dups2)
	case dups2 > 0:
		t.Logf("the restart (%v) outlasted the lease (%v): %d messages in flight were taken over and sent again", outage, clusterLease, dups2)
	}
	for _, g := range []*gw{a, b} {
		if !strings.Contains(g.logText(), `"listening"`) {
			t.Error("a node stopped")
		}
	}
	waitQueueEmpty(t, b, logs)
	step("phase 2 queue empty")
}

// waitQueueEmpty waits until `queue list` (cluster-wide) shows nothing.
func waitQueueEmpty(t *testing.T, g *gw, logs func() string) {
	t.Helper()
	var left []queueEntry
	waitUntil(t, 60*time.Second, func() bool {
		left = g.queueEntries(t)
		return len(left) == 0
	}, func() string {
		return fmt.Sprintf("%d entries left in the queue, e.g. %+v; logs:\n%s", len(left), left[0], logs())
	})
}

// TestClusterNodesShareOneEmbeddedCA: a node joining a database whose
// certificates come from another node's embedded CA refuses to start, with
// or without a CA of its own, instead of issuing from a second CA whose
// certificates the first node's chain and CRL do not know; with the first
// node's CA copied it starts.
func TestClusterNodesShareOneEmbeddedCA(t *testing.T) {
	pg := testpeer.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	sink := testpeer.StartSink(t, testpeer.SinkOptions{})
	key := filepath.Join(t.TempDir(), "master.key")
	a := clusterNode(t, "node-a.example.org", dsn, key, sink.Addr)
	b := clusterNode(t, "node-b.example.org", dsn, key, sink.Addr)
	a.start()
	idA := a.nodeID(t)

	out := serveFails(t, b)
	for _, want := range []string{"embedded CA of node " + idA, "this node has no CA in", "copy " + filepath.Join(b.dir, "data", "ca")} {
		if !strings.Contains(out, want) {
			t.Fatalf("node b without a CA: the error does not say %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(b.dir, "data", "ca", "root.crt")); err == nil {
		t.Fatal("node b created a CA of its own although the database has one")
	}

	b.cli("pki", "init") // a second CA, made by hand
	out = serveFails(t, b)
	if !strings.Contains(out, "embedded CA of node "+idA) || !strings.Contains(out, "is another one") {
		t.Fatalf("node b with another CA: %s", out)
	}

	shareCA(t, a, b)
	b.start()
	if !strings.Contains(b.logText(), `"listening"`) {
		t.Fatal("node b with node a's CA did not start")
	}
}
