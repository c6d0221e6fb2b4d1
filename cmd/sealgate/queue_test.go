package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/store"

	_ "modernc.org/sqlite"
)

// TestQueueRetryDeleteAudit: retry and delete change the queue and leave
// an audit row; when the audit row cannot be written the change stands but
// the command fails and says so, rather than leaving a silent gap in the
// trail.
func TestQueueRetryDeleteAudit(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfgPath, []byte(pkiTestConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, _, err := openStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "b2"} {
		if err := st.PutQueueEntry(ctx, store.QueueEntry{ID: id, Node: "n", Sender: "alice@example.org",
			Recipients: []string{"x@other.test"}, State: "held", HoldReason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	mustSG(t, cfgPath, "queue", "retry", "a1")
	var shown queueEntryJSON
	if err := json.Unmarshal([]byte(mustSG(t, cfgPath, "queue", "show", "a1", "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.State != "queued" || shown.HoldReason != "" {
		t.Fatalf("after retry: %+v", shown)
	}

	// Make every audit insert fail, as a full disk or a revoked grant would.
	db, err := sql.Open("sqlite", cfg.DataPath("sealgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log BEGIN SELECT RAISE(FAIL, 'audit log unwritable'); END`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	code, _, errs := sg(t, cfgPath, "queue", "delete", "b2")
	if code != 1 || !strings.Contains(errs, "b2") || !strings.Contains(errs, "audit record was not written") {
		t.Fatalf("delete with a broken audit log: exit %d, stderr %q", code, errs)
	}
	// b2 belongs to node "n" (its spool file is there): the entry is
	// marked deleted, and n removes file and entry at its next poll.
	var gone queueEntryJSON
	if err := json.Unmarshal([]byte(mustSG(t, cfgPath, "queue", "show", "b2", "-o", "json")), &gone); err != nil || gone.State != "deleted" {
		t.Fatalf("b2 after delete on another node: %+v (%v), want state deleted", gone, err)
	}

	st, _, err = openStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	events, err := st.AuditEvents(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action+" "+e.Subject)
	}
	if strings.Join(actions, ",") != "queue.retry a1" {
		t.Fatalf("audit trail %q, want the retry only", actions)
	}
	// The events API sees the release and the deletion, one event per
	// recipient, saying who did it and why the message had been held.
	evs, err := st.DeliveryEvents(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.QueueID+" "+e.Recipient+" "+e.Outcome+" "+e.Reason)
	}
	want := []string{"a1 x@other.test released released by an operator (sealgate queue retry) (was held: test)",
		"b2 x@other.test deleted deleted by an operator (sealgate queue delete) (was held: test)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("delivery events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A retry of a message that is not held releases nothing (the audit
	// log is still broken: the command fails after the change).
	sg(t, cfgPath, "queue", "retry", "a1")
	if evs2, _ := st.DeliveryEvents(ctx, store.EventFilter{}); len(evs2) != len(evs) {
		t.Fatalf("retrying a queued message recorded %d more events", len(evs2)-len(evs))
	}
}

// TestQueueListLanes: queue list and show name each message's lane (LANE
// column, JSON lane), --lane narrows the list, and queue delete of an
// inbound message of this node removes its file from the inbound spool.
func TestQueueListLanes(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfgPath, []byte(pkiTestConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	mustSG(t, cfgPath, "queue", "list") // makes the node id
	raw, err := os.ReadFile(cfg.DataPath("node-id"))
	if err != nil {
		t.Fatal(err)
	}
	node := strings.TrimSpace(string(raw))
	ctx := context.Background()
	st, kr, err := openStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	in, err := gateway.OpenSpool(cfg.DataPath("spool-inbound"), kr)
	if err != nil {
		t.Fatal(err)
	}
	env := &gateway.Envelope{ID: gateway.NewID(), From: "carol@partner.test", Recipients: []gateway.Recipient{{Addr: "alice@example.org"}}}
	if _, err := in.Write(env, strings.NewReader("Subject: for alice\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, e := range []store.QueueEntry{
		{ID: "o1", Node: node, Sender: "alice@example.org", Recipients: []string{"x@other.test"}, State: "held", HoldReason: "test"},
		{ID: env.ID, Node: node, Lane: store.LaneInbound, Sender: "carol@partner.test", Recipients: []string{"alice@example.org"}, State: "deferred"},
	} {
		if err := st.PutQueueEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	lanes := func(args ...string) map[string]string {
		t.Helper()
		var list []queueEntryJSON
		if err := json.Unmarshal([]byte(mustSG(t, cfgPath, append([]string{"queue", "list", "-o", "json"}, args...)...)), &list); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, e := range list {
			out[e.ID] = e.Lane
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		want map[string]string
	}{
		{nil, map[string]string{"o1": "outbound", env.ID: "inbound"}},
		{[]string{"--lane", "inbound"}, map[string]string{env.ID: "inbound"}},
		{[]string{"--lane", "outbound"}, map[string]string{"o1": "outbound"}},
	} {
		if got := lanes(tc.args...); !maps.Equal(got, tc.want) {
			t.Errorf("queue list %v: %v, want %v", tc.args, got, tc.want)
		}
	}
	text := mustSG(t, cfgPath, "queue", "list")
	if !strings.Contains(text, "LANE") || !strings.Contains(text, env.ID+"  inbound") {
		t.Errorf("queue list without the lane:\n%s", text)
	}
	if code, _, errs := sg(t, cfgPath, "queue", "list", "--lane", "sideways"); code != 2 || !strings.Contains(errs, "--lane") {
		t.Errorf("an unknown lane: exit %d, %q; want a usage error", code, errs)
	}
	if show := mustSG(t, cfgPath, "queue", "show", env.ID); !strings.Contains(show, "lane:         inbound") {
		t.Errorf("queue show without the lane:\n%s", show)
	}
	mustSG(t, cfgPath, "queue", "delete", env.ID)
	if ids, err := in.IDs(); err != nil || len(ids) != 0 {
		t.Errorf("inbound spool after delete: %v, %v", ids, err)
	}
	if got := lanes(); !maps.Equal(got, map[string]string{"o1": "outbound"}) {
		t.Errorf("after deleting the inbound message: %v", got)
	}
}
