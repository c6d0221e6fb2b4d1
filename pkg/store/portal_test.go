package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPortalTokens(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, testKeyring(t))
			clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			s.now = func() time.Time { return clock }
			tok := PortalToken{Hash: "h1", Kind: "invite", Email: "Bob@Partner.Example", Sender: "alice@example.org", ExpiresAt: clock.Add(time.Hour)}
			if added, err := s.AddPortalToken(ctx, tok, true); err != nil || !added {
				t.Fatalf("first invite: added=%v err=%v", added, err)
			}
			// Invite once per recipient while a link is live.
			if added, err := s.AddPortalToken(ctx, PortalToken{Hash: "h2", Kind: "invite", Email: "bob@partner.example", ExpiresAt: clock.Add(time.Hour)}, true); err != nil || added {
				t.Fatalf("second live invite: added=%v err=%v, want not added", added, err)
			}
			got, err := s.LivePortalToken(ctx, "h1")
			if err != nil || got.Email != "bob@partner.example" || got.Sender != "alice@example.org" {
				t.Fatalf("LivePortalToken = %+v, %v", got, err)
			}
			if _, err := s.LivePortalToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("unknown token: %v, want ErrNotFound", err)
			}
			if _, err := s.SetPDFPasswordWithToken(ctx, "h1", "reset", []byte("correct horse battery"), "portal"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("token of another kind: %v, want refused", err)
			}
			// Spent by concurrent requests exactly once.
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok := 0
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := s.SetPDFPasswordWithToken(ctx, "h1", "invite", []byte("correct horse battery"), "portal"); err == nil {
						mu.Lock()
						ok++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if ok != 1 {
				t.Fatalf("token spent %d times, want once", ok)
			}
			pw, source, announced, err := s.PDFPasswordState(ctx, "bob@partner.example")
			if err != nil || string(pw) != "correct horse battery" || source != "portal" || !announced {
				t.Fatalf("password after portal: %q %q %v %v", pw, source, announced, err)
			}
			if src, at, err := s.PDFPasswordSetAt(ctx, "bob@partner.example"); err != nil || src != "portal" || !at.Equal(clock) {
				t.Fatalf("PDFPasswordSetAt = %q %v %v", src, at, err)
			}
			if _, err := s.LivePortalToken(ctx, "h1"); !errors.Is(err, ErrTokenSpent) {
				t.Fatalf("reused token: %v, want ErrTokenSpent", err)
			}
			// A spent token no longer blocks a new invitation; an expired one neither.
			if added, _ := s.AddPortalToken(ctx, PortalToken{Hash: "h3", Kind: "invite", Email: "bob@partner.example", ExpiresAt: clock.Add(time.Minute)}, true); !added {
				t.Fatal("invite after the spent one not added")
			}
			clock = clock.Add(2 * time.Minute)
			if _, err := s.LivePortalToken(ctx, "h3"); !errors.Is(err, ErrTokenSpent) {
				t.Fatalf("expired token: %v, want ErrTokenSpent", err)
			}
			if _, err := s.SetPDFPasswordWithToken(ctx, "h3", "invite", []byte("another long one"), "portal"); !errors.Is(err, ErrTokenSpent) {
				t.Fatalf("expired token sets a password: %v", err)
			}
			if n, err := s.DeleteExpiredPortalTokens(ctx, clock); err != nil || n != 1 {
				t.Fatalf("DeleteExpiredPortalTokens = %d, %v (want the expired one)", n, err)
			}
		})
	}
}

// A reply link's subject is kept sealed, bound to its row: the column
// holds no plain text, and a sealed subject copied into another row does
// not open.
func TestPortalReplySubjectSealed(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, testKeyring(t))
			const subject = "Übernahme Q3 <confidential>"
			for _, h := range []string{"r1", "r2"} {
				if _, err := s.AddPortalToken(ctx, PortalToken{Hash: h, Kind: "reply", Email: "bob@partner.example",
					Sender: "alice@example.org", MessageID: "<m1@example.org>", Subject: subject, ExpiresAt: time.Now().Add(time.Hour)}, false); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.LivePortalToken(ctx, "r1")
			if err != nil || got.Subject != subject || got.MessageID != "<m1@example.org>" || got.Kind != "reply" {
				t.Fatalf("LivePortalToken = %+v, %v", got, err)
			}
			var raw []byte
			if err := s.queryRow(ctx, nil, `SELECT subject FROM portal_tokens WHERE hash = $1`, "r1").Scan(&raw); err != nil {
				t.Fatal(err)
			}
			if len(raw) == 0 || strings.Contains(string(raw), "Q3") {
				t.Fatalf("the subject column holds %q", raw)
			}
			if _, err := s.exec(ctx, nil, `UPDATE portal_tokens SET subject = $1 WHERE hash = $2`, raw, "r2"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.LivePortalToken(ctx, "r2"); err == nil {
				t.Fatal("a subject copied from another link opened")
			}
			// Links without a subject (invitations) read as before.
			if _, err := s.AddPortalToken(ctx, PortalToken{Hash: "i1", Kind: "invite", Email: "c@partner.example", ExpiresAt: time.Now().Add(time.Hour)}, true); err != nil {
				t.Fatal(err)
			}
			if got, err := s.LivePortalToken(ctx, "i1"); err != nil || got.Subject != "" {
				t.Fatalf("invitation: %+v, %v", got, err)
			}
		})
	}
}

func TestPortalFailures(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t, testKeyring(t))
			clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			s.now = func() time.Time { return clock }
			delay := func(n int) time.Duration { return time.Duration(n) * time.Minute }
			for want := 1; want <= 3; want++ {
				n, until, err := s.AddPortalFailure(ctx, "addr:192.0.2.1", delay)
				if err != nil || n != want || !until.Equal(clock.Add(time.Duration(want)*time.Minute)) {
					t.Fatalf("failure %d: n=%d until=%v err=%v", want, n, until, err)
				}
			}
			if until, err := s.PortalBlockedUntil(ctx, "addr:192.0.2.1"); err != nil || until.IsZero() {
				t.Fatalf("blocked: %v %v", until, err)
			}
			if until, _ := s.PortalBlockedUntil(ctx, "addr:192.0.2.2"); !until.IsZero() {
				t.Fatal("another address is blocked")
			}
			clock = clock.Add(4 * time.Minute)
			if until, _ := s.PortalBlockedUntil(ctx, "addr:192.0.2.1"); !until.IsZero() {
				t.Fatal("still blocked after the delay")
			}
			if err := s.ClearPortalFailures(ctx, "addr:192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			if n, _, _ := s.AddPortalFailure(ctx, "addr:192.0.2.1", delay); n != 1 {
				t.Fatalf("after clearing, count restarts: %d", n)
			}
		})
	}
}
