package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/policy"
)

// TestDirectoryGroupsCache walks the cache through a directory outage:
// unknown before the first read, fresh reads after the TTL, the last good
// read while the directory fails (retries throttled), unknown again after
// maxStale.
func TestDirectoryGroupsCache(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var reads int
	var fail bool
	g := newDirectoryGroups(func(context.Context) (map[string][]string, error) {
		reads++
		if fail {
			return nil, errors.New("ldap down")
		}
		return map[string][]string{"cid@example.test": {"legal"}}, nil
	}, nil)
	g.now = func() time.Time { return now }
	ctx := context.Background()

	steps := []struct {
		name      string
		advance   time.Duration
		fail      bool
		wantErr   bool
		wantReads int
	}{
		{"down at start: unknown", 0, true, true, 1},
		{"retry throttled", time.Second, true, true, 1},
		{"retry after the pause, directory back", groupsRetryAfter, false, false, 2},
		{"within the TTL: cached", 30 * time.Second, false, false, 2},
		{"TTL passed: re-read", 31 * time.Second, false, false, 3},
		{"down: last good read used", 2 * time.Minute, true, false, 4},
		{"down, retry throttled, still cached", time.Second, true, false, 4},
		{"down past maxStale: unknown", groupsMaxStale, true, true, 5},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		fail = s.fail
		groups, err := g.SenderGroups(ctx, "CID@example.test")
		if (err != nil) != s.wantErr || reads != s.wantReads {
			t.Fatalf("%s: groups %v err %v reads %d, want err %v reads %d", s.name, groups, err, reads, s.wantErr, s.wantReads)
		}
		if err == nil && !slices.Equal(groups, []string{"legal"}) {
			t.Fatalf("%s: groups %v", s.name, groups)
		}
	}
	fail = false
	if err := g.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if groups, err := g.SenderGroups(ctx, "dee@example.test"); err != nil || groups != nil {
		t.Fatalf("non-member: %v %v", groups, err)
	}
}

type failingGroups struct{}

func (failingGroups) SenderGroups(context.Context, string) ([]string, error) {
	return nil, errors.New("directory unavailable")
}

// TestDeciderUnknownGroups: with the groups unknown, the policy decides as
// if the sender were in no group unless a sender_group rule comes before
// the deciding rule; then the recipient is held.
func TestDeciderUnknownGroups(t *testing.T) {
	const rules = `
[policy]
internal_domains = ["example.org"]
[[policy.rules]]
name = "partner-pdf"
recipient_domain = ["pdf.test"]
encrypt = "pdf"
[[policy.rules]]
name = "legal"
sender_group = ["legal"]
encrypt = "smime-required"
[[policy.rules]]
name = "default"
encrypt = "smime"
`
	pol := loadTestPolicy(t, rules)
	noGroupRules := loadTestPolicy(t, "[[policy.rules]]\nname = \"default\"\nencrypt = \"smime\"\n")
	facts := &gateway.MessageFacts{Sender: "cid@example.org", Subject: "s"}
	for _, tc := range []struct {
		name   string
		d      policyDecider
		rcpt   string
		action gateway.Action
		rule   string
	}{
		{"rule before the group rule decides", policyDecider{p: pol, groups: failingGroups{}}, "a@pdf.test", gateway.ActionDeliver, "partner-pdf"},
		{"group rule undecidable: held", policyDecider{p: pol, groups: failingGroups{}}, "a@partner.test", gateway.ActionHold, "default (sender groups unknown"},
		{"internal recipient passes", policyDecider{p: pol, groups: failingGroups{}}, "b@example.org", gateway.ActionPass, ""},
		{"no sender_group rule: decides", policyDecider{p: noGroupRules, groups: failingGroups{}}, "a@partner.test", gateway.ActionDeliver, "default"},
		{"groups known: member", policyDecider{p: pol, groups: staticGroups{"cid@example.org": {"Legal"}}}, "a@partner.test", gateway.ActionHold, "legal"}, // smime-required, no certificate
		{"groups known: non-member", policyDecider{p: pol, groups: staticGroups{}}, "a@partner.test", gateway.ActionDeliver, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.d.Decide(context.Background(), facts, tc.rcpt, false)
			if d.Action != tc.action || !strings.HasPrefix(d.Rule, tc.rule) {
				t.Fatalf("got action %v rule %q, want %v %q", d.Action, d.Rule, tc.action, tc.rule)
			}
			if d.Action == gateway.ActionHold && !d.MustEncrypt {
				t.Fatal("a hold for unknown groups must be must-encrypt")
			}
		})
	}
}

func loadTestPolicy(t *testing.T, rules string) *policy.Policy {
	t.Helper()
	f := filepath.Join(t.TempDir(), "sealgate.toml")
	if err := os.WriteFile(f, []byte("data_dir = \"./data\"\n[relay]\nmode = \"dir\"\ndir = \"out\"\n"+rules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
