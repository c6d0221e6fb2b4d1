package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/apitest"
)

// apiEvent is an event as a SIEM reads it from GET /api/v1/events.
type apiEvent struct {
	ID        string          `json:"id"`
	QueueID   string          `json:"queue_id"`
	MessageID string          `json:"message_id"`
	Recipient string          `json:"recipient"`
	Outcome   string          `json:"outcome"`
	Method    string          `json:"method"`
	Rule      string          `json:"rule"`
	Reason    string          `json:"reason"`
	Attempt   int             `json:"attempt"`
	TLS       json.RawMessage `json:"tls"`
}

// poller is a SIEM pulling events with its cursor and small pages, as a
// real one would, through restarts of serve (it keeps its cursor and
// retries while the listener is away).
type poller struct {
	t     *testing.T
	token string
	v     *apitest.Validator
	base  atomic.Value // string: http://host:port of the current serve
	limit int

	mu     sync.Mutex
	events []apiEvent
	raw    strings.Builder // every page as received
	cursor string
	pages  int
	errors int // refused connections while serve restarts
}

func (p *poller) page() (int, error) {
	url := p.base.Load().(string) + "/api/v1/events?limit=" + strconv.Itoa(p.limit)
	p.mu.Lock()
	if p.cursor != "" {
		url += "&after=" + p.cursor
	}
	p.mu.Unlock()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	p.v.Response(p.t, req, resp.StatusCode, resp.Header, body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	var page struct {
		Events []apiEvent `json:"events"`
		Next   string     `json:"next"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(page.Events) == 0 && page.Next != p.cursor && !(p.cursor == "" && page.Next == "0") {
		p.t.Errorf("empty page moved the cursor from %q to %q", p.cursor, page.Next)
	}
	p.events = append(p.events, page.Events...)
	p.raw.Write(body)
	p.cursor = page.Next
	p.pages++
	return len(page.Events), nil
}

func (p *poller) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		n, err := p.page()
		if err != nil {
			p.mu.Lock()
			p.errors++
			p.mu.Unlock()
		}
		select {
		case <-stop:
			// Drain: what was recorded before the stop is read too.
			for {
				if n, err := p.page(); err != nil || n == 0 {
					return
				}
			}
		default:
		}
		if n == 0 || err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (p *poller) snapshot() []apiEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]apiEvent(nil), p.events...)
}

func (g *gw) stopServe() {
	g.t.Helper()
	g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			g.t.Fatalf("serve after SIGTERM: %v\n%s", err, tail(g.logText(), 20))
		}
	case <-time.After(60 * time.Second):
		g.t.Fatal("serve did not stop on SIGTERM")
	}
}

// TestEventsAPIThousandMessages is issue 14's "done when" for the events
// API: 1,000 messages through the real serve (outbox relay) while a client
// polls GET /api/v1/events with its cursor and pages of 37, with serve
// restarted in the middle. Every delivered recipient appears exactly once
// as delivered and once as accepted, no event twice, ids increase, and a
// fresh read from the start returns exactly what the poller collected.
// Besides, a PDF message with a password in its subject and a held one
// that an operator releases and deletes: no subject, password or body in
// any event, and the held, released and deleted events say rule and why.
func TestEventsAPIThousandMessages(t *testing.T) {
	const messages = 1000
	g := newGateway(t, "")
	var token string
	for _, line := range strings.Split(string(g.cli("api", "token", "create", "siem", "--scope", "events:read")), "\n") {
		if strings.HasPrefix(line, "sgt_") {
			token = strings.TrimSpace(line)
		}
	}
	if token == "" {
		t.Fatal("api token create printed no token")
	}
	g.start()
	p := &poller{t: t, token: token, v: apitest.New(t), limit: 37}
	p.base.Store("http://" + g.http)
	stop, polled := make(chan struct{}), make(chan struct{})
	go p.run(stop, polled)

	start := time.Now()
	queued := map[string]string{} // queue id → recipient
	var qmu sync.Mutex
	sendBatch := func(from, to int) {
		const conns = 4
		var wg sync.WaitGroup
		for c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, err := smtp.Dial(g.addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer cl.Close()
				for i := from + c; i < to; i += conns {
					rcpt := fmt.Sprintf("bob%04d@example.org", i)
					id, err := send(cl, "alice@example.org", rcpt, fmt.Sprintf("From: alice@example.org\r\nTo: %s\r\nSubject: m%d\r\nMessage-Id: <m%d@example.org>\r\n\r\nbody %d\r\n", rcpt, i, i, i))
					if err != nil {
						t.Errorf("message %d: %v", i, err)
						return
					}
					qmu.Lock()
					queued[id] = rcpt
					qmu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	sendBatch(0, messages/2)
	// The secrets: a PDF message whose subject carries its password, and
	// a confidential one for a recipient without certificate (held).
	const pw, subjectWord, bodySecret = "Kennwort-93817-xyz", "Quartalszahlen", "BODY-SECRET-7731"
	cl, err := smtp.Dial(g.addr)
	if err != nil {
		t.Fatal(err)
	}
	pdfID, err := send(cl, "alice@example.org", "partner@partner.example", "From: alice@example.org\r\nTo: partner@partner.example\r\nSubject: [pw:"+pw+"] "+subjectWord+" Q3\r\nMessage-Id: <pdf1@example.org>\r\n\r\n"+bodySecret+" the numbers\r\n")
	if err != nil {
		t.Fatal(err)
	}
	heldID, err := send(cl, "alice@example.org", "conf@partner.example", "From: alice@example.org\r\nTo: conf@partner.example\r\nSubject: "+subjectWord+" confidential\r\nX-Classification: Confidential\r\nMessage-Id: <held1@example.org>\r\n\r\n"+bodySecret+"\r\n")
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()

	// Restart in the middle: the first half may still be in the queue.
	g.stopServe()
	g.start()
	p.base.Store("http://" + g.http)
	sendBatch(messages/2, messages)
	if t.Failed() {
		t.FailNow()
	}

	delivered := func() int {
		n := 0
		for _, e := range p.snapshot() {
			if e.Outcome == "delivered" && strings.HasPrefix(e.Recipient, "bob") {
				n++
			}
		}
		return n
	}
	waitUntil(t, 60*time.Second, func() bool { return delivered() >= messages }, func() string {
		return fmt.Sprintf("the poller saw %d of %d deliveries; log tail:\n%s", delivered(), messages, tail(g.logText(), 10))
	})
	elapsed := time.Since(start)

	// The held message: released by an operator (held again: still no
	// certificate), then deleted.
	waitUntil(t, 30*time.Second, func() bool {
		return strings.Contains(string(g.cli("queue", "show", heldID)), "held because")
	}, func() string { return "the confidential message was not held" })
	g.cli("queue", "retry", heldID)
	waitUntil(t, 30*time.Second, func() bool {
		var e struct {
			State    string `json:"state"`
			Attempts int    `json:"attempts"`
		}
		_ = json.Unmarshal(g.cli("queue", "show", heldID, "-o", "json"), &e)
		return e.State == "held" && e.Attempts == 2
	}, func() string { return "the released message was not tried again" })
	g.cli("queue", "delete", heldID)
	waitUntil(t, 30*time.Second, func() bool {
		for _, e := range p.snapshot() {
			if e.QueueID == heldID && e.Outcome == "deleted" {
				return true
			}
		}
		return false
	}, func() string { return "no deleted event" })
	close(stop)
	<-polled

	evs := p.snapshot()
	seenID := map[string]bool{}
	prev := int64(0)
	count := map[string]int{} // recipient/outcome
	for _, e := range evs {
		if seenID[e.ID] {
			t.Fatalf("event %s seen twice", e.ID)
		}
		seenID[e.ID] = true
		n, _ := strconv.ParseInt(e.ID, 10, 64)
		if n <= prev {
			t.Fatalf("ids out of order: %d after %d", n, prev)
		}
		prev = n
		count[e.Recipient+" "+e.Outcome]++
	}
	for id, rcpt := range queued {
		for _, o := range []string{"accepted", "delivered"} {
			if c := count[rcpt+" "+o]; c != 1 {
				t.Errorf("%s (%s): %d %s events, want 1", rcpt, id, c, o)
			}
		}
	}
	if len(queued) != messages {
		t.Fatalf("%d messages queued, want %d", len(queued), messages)
	}

	// A fresh reader from the start, in pages of 1000, gets exactly what
	// the poller collected across the restart.
	fresh := &poller{t: t, token: token, v: p.v, limit: 1000}
	fresh.base.Store("http://" + g.http)
	for {
		n, err := fresh.page()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if got, want := len(fresh.events), len(evs); got != want {
		t.Fatalf("a fresh read has %d events, the poller %d", got, want)
	}
	for i := range evs {
		if fresh.events[i].ID != evs[i].ID {
			t.Fatalf("event %d: fresh %s, poller %s", i, fresh.events[i].ID, evs[i].ID)
		}
	}

	// No secret in any event, nor in the log.
	for _, s := range []string{pw, subjectWord, bodySecret} {
		if strings.Contains(p.raw.String(), s) || strings.Contains(fresh.raw.String(), s) {
			t.Errorf("%q appears in the events", s)
		}
	}
	for _, s := range []string{pw, bodySecret, token} {
		if strings.Contains(g.logText(), s) {
			t.Errorf("%q appears in serve's log", s)
		}
	}
	// The PDF copy and the held one, as the SOC sees them.
	var pdfDelivered, held, released, deleted int
	for _, e := range evs {
		switch {
		case e.QueueID == pdfID && e.Outcome == "delivered":
			pdfDelivered++
			if e.Method != "pdf" || e.Rule != "default" || e.MessageID != "<pdf1@example.org>" || e.Attempt != 1 {
				t.Errorf("PDF delivered event: %+v", e)
			}
		case e.QueueID == heldID && e.Outcome == "held":
			held++
			if e.Rule != "confidential" || e.Method != "smime" || e.Reason == "" || e.MessageID != "<held1@example.org>" {
				t.Errorf("held event: %+v", e)
			}
		case e.QueueID == heldID && e.Outcome == "released":
			released++
			if !strings.Contains(e.Reason, "sealgate queue retry") {
				t.Errorf("released event: %+v", e)
			}
		case e.QueueID == heldID && e.Outcome == "deleted":
			deleted++
			if !strings.Contains(e.Reason, "sealgate queue delete") || e.MessageID != "<held1@example.org>" {
				t.Errorf("deleted event: %+v", e)
			}
		}
	}
	if pdfDelivered != 1 || held != 2 || released != 1 || deleted != 1 {
		t.Errorf("PDF delivered %d, held %d, released %d, deleted %d; want 1, 2, 1, 1", pdfDelivered, held, released, deleted)
	}
	t.Logf("%d messages delivered in %v (a serve restart included); %d events in %d pages of ≤%d, %d polls refused during the restart",
		messages, elapsed.Round(time.Millisecond), len(evs), p.pages, p.limit, p.errors)
}
