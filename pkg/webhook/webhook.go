// Package webhook sends delivery events to the [[webhooks]] endpoints:
// one POST per event, oldest first, at least once, signed per the
// Standard Webhooks scheme (https://www.standardwebhooks.com).
//
// The store is the outbox. The delivery_events table already holds every
// event in commit order; each endpoint has a cursor (the last event id it
// answered with a 2xx) and one sender. A sender reads the events after its
// cursor that its filter selects, POSTs them one at a time in id order,
// and moves the cursor only after a 2xx, so an endpoint that is down, a
// restart or a crash loses nothing and changes no order: the event in
// flight is sent again, with the same webhook-id.
//
// Several gateway nodes on one PostgreSQL each run a sender per endpoint,
// and the store's advisory lock "webhook:<name>" lets one of them send;
// the cursor moves by compare and set, so a node that lost its lock
// without noticing cannot move it backwards or past what it did not send.
//
// Mail never waits for a webhook: the senders run beside the queue and
// read what the queue has already committed.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// Store is what the senders need; *store.Store satisfies it.
type Store interface {
	StartWebhookCursor(ctx context.Context, name, node string) (store.WebhookCursor, error)
	AdvanceWebhookCursor(ctx context.Context, name string, from, to int64, node string) error
	WebhookAttemptFailed(ctx context.Context, name, reason, node string) error
	DeliveryEvents(ctx context.Context, f store.EventFilter) ([]store.DeliveryEvent, error)
	DeliveryEventIDRange(ctx context.Context) (oldest, newest int64, err error)
	TryLockHeld(ctx context.Context, name string) (*store.HeldLock, error)
	Audit(ctx context.Context, e store.AuditEvent) error
}

// Endpoint is one [[webhooks]] entry, its secrets read.
type Endpoint struct {
	Name    string
	URL     string
	Secrets [][]byte // every one signs; at least one
	Events  []string // outcomes sent; empty: all
	// Timeout bounds one POST (default 15 s).
	Timeout time.Duration
	// MaxBackoff caps the wait between failed attempts (default 5 min).
	MaxBackoff time.Duration
	// RootCAs verify the endpoint's certificate (nil: the system roots).
	RootCAs *x509.CertPool
}

// Sender runs one sender per endpoint until its context ends.
type Sender struct {
	Store     Store
	Endpoints []Endpoint
	Node      string // this gateway node, written with the cursor
	Log       *slog.Logger

	// Poll is how often an idle sender looks for new events (default 1 s).
	Poll time.Duration
	// LockRetry is how often a node whose peer holds an endpoint's lock
	// tries again (default 5 s): the time another node takes over after
	// the sending node died.
	LockRetry time.Duration
	// MinBackoff is the first wait after a failure (default 1 s); it
	// doubles per failure up to the endpoint's MaxBackoff.
	MinBackoff time.Duration
	// Batch is how many events one read returns (default 100).
	Batch int

	// Transport replaces the HTTP transport (tests); nil: one per
	// endpoint built from its RootCAs.
	Transport http.RoundTripper

	countersMu sync.Mutex
	counters   map[string]*counters
}

// Counters are one endpoint's totals since this process started, for
// metrics.
type Counters struct {
	Sent   int64 // events answered with a 2xx
	Failed int64 // attempts that failed
	Lost   int64 // events pruned by retention before the endpoint got them (at most; see gap)
}

type counters struct{ sent, failed, lost atomic.Int64 }

// Counters returns each endpoint's totals by name.
func (s *Sender) Counters() map[string]Counters {
	s.countersMu.Lock()
	defer s.countersMu.Unlock()
	out := make(map[string]Counters, len(s.counters))
	for n, c := range s.counters {
		out[n] = Counters{Sent: c.sent.Load(), Failed: c.failed.Load(), Lost: c.lost.Load()}
	}
	return out
}

func (s *Sender) countersOf(name string) *counters {
	s.countersMu.Lock()
	defer s.countersMu.Unlock()
	if s.counters == nil {
		s.counters = map[string]*counters{}
	}
	c := s.counters[name]
	if c == nil {
		c = &counters{}
		s.counters[name] = c
	}
	return c
}

func (s *Sender) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Run sends until ctx ends; it returns when every sender has stopped.
func (s *Sender) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ep := range s.Endpoints {
		w := &worker{s: s, ep: ep, client: s.client(ep), n: s.countersOf(ep.Name),
			log: s.log().With("webhook", ep.Name, "host", hostOf(ep.URL))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	wg.Wait()
}

// client never follows a redirect (a 3xx is a failure: the admin fixes the
// URL) and never keeps more than a few idle connections.
func (s *Sender) client(ep Endpoint) *http.Client {
	rt := s.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ep.RootCAs}
		t.MaxIdleConnsPerHost = 2
		t.ResponseHeaderTimeout = orDefault(ep.Timeout, 15*time.Second)
		rt = t
	}
	return &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// hostOf is the URL's host for logs: the path and query may carry a token.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Host
}

type worker struct {
	s      *Sender
	ep     Endpoint
	client *http.Client
	n      *counters
	log    *slog.Logger
}

func (w *worker) lockName() string { return "webhook:" + w.ep.Name }

// run takes the endpoint's lock (waiting while another node holds it) and
// sends while it holds it.
func (w *worker) run(ctx context.Context) {
	retry := orDefault(w.s.LockRetry, 5*time.Second)
	waiting := false
	for ctx.Err() == nil {
		lock, err := w.s.Store.TryLockHeld(ctx, w.lockName())
		switch {
		case errors.Is(err, store.ErrLocked):
			if !waiting {
				w.log.Info("webhook: another node sends for this endpoint; standing by")
				waiting = true
			}
			sleep(ctx, retry)
			continue
		case err != nil:
			w.log.Warn("webhook: cannot take the endpoint's lock", "err", err)
			sleep(ctx, retry)
			continue
		}
		waiting = false
		err = w.send(ctx, lock)
		lock.Release()
		if err != nil && ctx.Err() == nil {
			w.log.Warn("webhook: sender stopped, starting again", "err", err)
			sleep(ctx, retry)
		}
	}
}

// errLostLock ends a sending round: the lock or the cursor is no longer
// ours.
var errLostLock = errors.New("webhook: the endpoint's lock or cursor moved to another node")

// send delivers events while lock is held. It returns on ctx's end, when
// the lock is lost, when another node moved the cursor, or on a store
// error.
func (w *worker) send(ctx context.Context, lock *store.HeldLock) error {
	cur, err := w.s.Store.StartWebhookCursor(ctx, w.ep.Name, w.s.Node)
	if err != nil {
		return err
	}
	last := cur.LastID
	w.log.Info("webhook: sending", "after_event", last)
	poll := orDefault(w.s.Poll, time.Second)
	batch := w.s.Batch
	if batch <= 0 {
		batch = 100
	}
	for ctx.Err() == nil {
		if err := lock.Alive(ctx); err != nil {
			return fmt.Errorf("%w: %w", errLostLock, err)
		}
		oldest, newest, err := w.s.Store.DeliveryEventIDRange(ctx)
		if err != nil {
			return err
		}
		if last, err = w.gap(ctx, last, oldest); err != nil {
			return err
		}
		evs, err := w.s.Store.DeliveryEvents(ctx, store.EventFilter{After: last, Outcomes: w.ep.Events, Limit: batch})
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			// Nothing the filter selects up to newest (read before the
			// query: ids are in commit order, so nothing at or below it
			// can still come): skip the rest, so the next read starts
			// there and not at the last event this endpoint wanted.
			if newest > last {
				if err := w.advance(ctx, last, newest); err != nil {
					return err
				}
				last = newest
			}
			sleep(ctx, poll)
			continue
		}
		for _, e := range evs {
			if err := w.deliver(ctx, lock, e); err != nil {
				return err
			}
			if err := w.advance(ctx, last, e.ID); err != nil {
				return err
			}
			last = e.ID
			w.n.sent.Add(1)
		}
	}
	return ctx.Err()
}

func (w *worker) advance(ctx context.Context, from, to int64) error {
	err := w.s.Store.AdvanceWebhookCursor(ctx, w.ep.Name, from, to, w.s.Node)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %w", errLostLock, err)
	}
	return err
}

// gap notices events that retention pruned before this endpoint got them:
// the oldest event left is past the cursor's next. It says so in the log
// (error), the audit log and the Lost counter, never silently, and moves
// the cursor to the oldest event left. The ids in between may include
// ones never committed (a rolled-back insert), so the count is an upper
// bound.
func (w *worker) gap(ctx context.Context, last, oldest int64) (int64, error) {
	if oldest == 0 || oldest <= last+1 {
		return last, nil
	}
	lost := oldest - 1 - last
	w.log.Error("webhook: delivery events were pruned by [events] retention before this endpoint got them",
		"after_event", last, "up_to_event", oldest-1, "at_most", lost)
	if err := w.s.Store.Audit(ctx, store.AuditEvent{Actor: "webhook", Action: "webhook.events_lost", Subject: w.ep.Name,
		Detail: fmt.Sprintf("events %d to %d pruned before delivery (at most %d)", last+1, oldest-1, lost)}); err != nil {
		return last, err
	}
	if err := w.advance(ctx, last, oldest-1); err != nil {
		return last, err
	}
	w.n.lost.Add(lost)
	return oldest - 1, nil
}

// deliver POSTs e until the endpoint answers 2xx, waiting between attempts
// with capped exponential backoff and jitter (or the endpoint's
// Retry-After). It gives up only when ctx ends or the lock is lost: an
// event is never skipped.
func (w *worker) deliver(ctx context.Context, lock *store.HeldLock, e store.DeliveryEvent) error {
	body, err := Payload(e)
	if err != nil {
		return err
	}
	id := MessageID(e)
	for attempt := 0; ; attempt++ {
		retryAfter, err := w.post(ctx, id, body)
		if err == nil {
			if attempt > 0 {
				w.log.Info("webhook: endpoint answers again", "event", e.ID, "attempts", attempt+1)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.n.failed.Add(1)
		wait := Backoff(attempt, orDefault(w.s.MinBackoff, time.Second), orDefault(w.ep.MaxBackoff, 5*time.Minute), rand.Float64())
		if retryAfter > wait {
			wait = min(retryAfter, time.Hour)
		}
		w.log.Warn("webhook: delivery failed, will retry", "event", e.ID, "webhook_id", id, "attempt", attempt+1, "err", err, "retry_in", wait.Round(time.Millisecond).String())
		if err := w.s.Store.WebhookAttemptFailed(ctx, w.ep.Name, err.Error(), w.s.Node); err != nil {
			w.log.Warn("webhook: recording the failed attempt", "err", err)
		}
		sleep(ctx, wait)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := lock.Alive(ctx); err != nil {
			return fmt.Errorf("%w: %w", errLostLock, err)
		}
	}
}

// maxResponseBody is how much of an answer is read (and thrown away) so
// that the connection can be reused; the rest is cut off.
const maxResponseBody = 64 << 10

// post sends one attempt. The error never carries the URL (its path or
// query may hold a token), only what went wrong.
func (w *worker) post(ctx context.Context, id string, body []byte) (retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(w.ep.Timeout, 15*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.ep.URL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("the URL does not make a request")
	}
	ts := time.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sealgate-webhook/1")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", Sign(w.ep.Secrets, id, ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("POST: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return 0, nil
	}
	msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		msg += " (redirects are not followed: put the final URL into the config)"
	case resp.StatusCode == http.StatusGone:
		msg += " (the endpoint says it is gone: remove or fix this [[webhooks]] entry; events wait until then)"
	}
	return parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()), errors.New(msg)
}

// parseRetryAfter reads seconds or an HTTP date (0 when absent or bad).
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if n <= 0 || n > 86400 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Backoff is the wait after failed attempt n (0-based): min doubled n
// times, capped at max, then jittered into [d/2, d) by r in [0, 1) so that
// several gateways do not retry in step.
func Backoff(n int, minWait, maxWait time.Duration, r float64) time.Duration {
	d := minWait
	for i := 0; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return d/2 + time.Duration(r*float64(d/2))
}

// MessageID is the event's webhook-id: the same for every attempt and
// every endpoint, different for every event. It joins the event id and
// its time, so that ids reused by a fresh database do not collide with
// ones a receiver remembers. No '.' (the signed content is id.ts.body).
func MessageID(e store.DeliveryEvent) string {
	return "evt_" + strconv.FormatInt(e.ID, 10) + "_" + strconv.FormatInt(e.Time.UnixMicro(), 36)
}

// Sign is the webhook-signature header: "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>" per secret, space-separated.
func Sign(secrets [][]byte, id string, ts time.Time, body []byte) string {
	sigs := make([]string, 0, len(secrets))
	for _, k := range secrets {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
		m.Write([]byte{'.'})
		m.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}

// Event is an event as the payload's data shows it: the fields of the
// events API, never a body, subject, password or key.
type Event struct {
	ID        int64           `json:"id"`
	Time      time.Time       `json:"time"`
	QueueID   string          `json:"queue_id"`
	MessageID string          `json:"message_id,omitempty"`
	Sender    string          `json:"sender"`
	Recipient string          `json:"recipient"`
	Outcome   string          `json:"outcome"`
	Method    string          `json:"method,omitempty"`
	Signed    bool            `json:"signed,omitempty"`
	Rule      string          `json:"rule,omitempty"`
	TLS       json.RawMessage `json:"tls,omitempty"`
	Attempt   int             `json:"attempt,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	Node      string          `json:"node,omitempty"`
}

// envelope is the Standard Webhooks payload.
type envelope struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      Event     `json:"data"`
}

// Payload is the body POSTed for e: {"type": "delivery.<outcome>",
// "timestamp": the event's time, "data": the event}.
func Payload(e store.DeliveryEvent) ([]byte, error) {
	ev := Event{ID: e.ID, Time: e.Time.UTC(), QueueID: e.QueueID, MessageID: e.MessageID, Sender: e.Sender, Recipient: e.Recipient,
		Outcome: e.Outcome, Method: e.Method, Signed: e.Signed, Rule: e.Rule, Attempt: e.Attempt, Reason: e.Reason, Node: e.Node}
	if e.TLS != "" && json.Valid([]byte(e.TLS)) {
		ev.TLS = json.RawMessage(e.TLS)
	}
	b, err := json.Marshal(envelope{Type: "delivery." + e.Outcome, Timestamp: ev.Time, Data: ev})
	if err != nil {
		return nil, fmt.Errorf("webhook: encoding event %d: %w", e.ID, err)
	}
	return b, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
