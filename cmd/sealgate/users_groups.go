package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/policy"
)

// senderGroupSource answers policy sender_group conditions: the groups a
// sender belongs to. A nil slice with a nil error means "in no group"; an
// error means the groups are unknown.
type senderGroupSource interface {
	SenderGroups(ctx context.Context, email string) ([]string, error)
}

// staticGroups is [[users.static]]: address (and alias), lower case, to groups.
type staticGroups map[string][]string

func staticGroupsFromConfig(cfg *config.Config) staticGroups {
	g := staticGroups{}
	for _, u := range cfg.Users.Static {
		for _, a := range append([]string{u.Email}, u.Aliases...) {
			g[strings.ToLower(strings.TrimSpace(a))] = u.Groups
		}
	}
	return g
}

func (g staticGroups) SenderGroups(_ context.Context, email string) ([]string, error) {
	return g[strings.ToLower(email)], nil
}

// Cache timings of directoryGroups.
const (
	// groupsTTL: how long a membership read is used before the next
	// message re-reads it. Short, so a user added to a "must encrypt"
	// group is covered within a minute even between syncs.
	groupsTTL = time.Minute
	// groupsMaxStale: how long the last good read still counts while the
	// directory fails. Memberships change rarely; a directory outage of a
	// few hours should not hold every message a group rule might concern.
	groupsMaxStale = 24 * time.Hour
	// groupsRetryAfter: after a failed read, messages do not wait for
	// another attempt (each would block for the LDAP timeout) until then.
	groupsRetryAfter = 15 * time.Second
	// groupsReadTimeout bounds one directory read.
	groupsReadTimeout = 30 * time.Second
)

// directoryGroups caches the directory's whole membership map (one read
// serves every sender), refreshed when older than ttl and at every PKI
// sync. When a refresh fails the previous map is used until maxStale; with
// nothing usable the groups are unknown and SenderGroups returns an error.
type directoryGroups struct {
	read     func(ctx context.Context) (map[string][]string, error)
	ttl      time.Duration
	maxStale time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	members  map[string][]string
	fetched  time.Time // of members
	failedAt time.Time // last failed read
	lastErr  error
}

func newDirectoryGroups(read func(ctx context.Context) (map[string][]string, error), log *slog.Logger) *directoryGroups {
	return &directoryGroups{read: read, ttl: groupsTTL, maxStale: groupsMaxStale, log: log, now: time.Now}
}

// Refresh re-reads the memberships now (called after each PKI sync).
func (g *directoryGroups) Refresh(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refreshLocked(ctx)
}

func (g *directoryGroups) refreshLocked(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, groupsReadTimeout)
	defer cancel()
	m, err := g.read(ctx)
	if err != nil {
		g.failedAt, g.lastErr = g.now(), err
		if g.log != nil {
			g.log.Warn("reading sender groups from the directory failed", "err", err,
				"using_previous", g.members != nil && g.now().Sub(g.fetched) <= g.maxStale)
		}
		return fmt.Errorf("reading sender groups: %w", err)
	}
	g.members, g.fetched, g.lastErr = m, g.now(), nil
	return nil
}

func (g *directoryGroups) SenderGroups(ctx context.Context, email string) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if g.members == nil || now.Sub(g.fetched) > g.ttl {
		if g.lastErr == nil || now.Sub(g.failedAt) >= groupsRetryAfter {
			_ = g.refreshLocked(ctx) // logged; the stale map may still do
		}
	}
	if g.members == nil || g.now().Sub(g.fetched) > g.maxStale {
		err := g.lastErr
		if err == nil {
			err = errors.New("no membership read yet")
		}
		return nil, fmt.Errorf("sender groups unknown: %w", err)
	}
	return g.members[strings.ToLower(email)], nil
}

// groupsHold is the decision when the sender's groups are unknown and a
// rule with sender_group, ordered before the rule that decided without
// groups, might have matched: that rule may demand encryption, so the
// message must not leave under a weaker rule. Held, not bounced: the
// sender did nothing wrong, and an admin can release it once the
// directory answers.
func groupsHold(rule string) gateway.Decision {
	return gateway.Decision{Action: gateway.ActionHold, MustEncrypt: true,
		Rule: rule + " (sender groups unknown: user directory unavailable, an earlier sender_group rule may apply)"}
}

// groupRuleUndecided says whether, with the sender in no known group, a
// rule conditioned on sender_group comes before the deciding rule: only
// then could the missing groups change the decision. Rules whose first
// failing condition is something else would not match whatever the
// groups; a rule that failed on sender_group may also fail later
// conditions, so this errs on the side of holding.
func groupRuleUndecided(p *policy.Policy, f policy.Facts, r policy.Recipient) bool {
	for _, t := range p.Explain(f, r).Trace {
		switch {
		case t.Result == policy.ResultMatched:
			return false
		case t.Result == policy.ResultNoMatch && t.Condition == "sender_group":
			return true
		}
	}
	return false
}
