package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/pki"
)

// liveUsers is the [users] section serve runs with: the user source the
// PKI rollout reads, the sender groups the policy asks, and the directory
// certificates are published to. SIGHUP swaps all three at once, so a
// rollout or a message sees either the old section or the new one, never
// a mix; a message in flight keeps the groups it already read.
type liveUsers struct {
	cur atomic.Pointer[userSet]
}

// userSet is one generation of [users].
type userSet struct {
	src     pki.UserSource
	groups  senderGroupSource
	dir     *pki.LDAPDirectory // nil for static users
	publish bool               // users.ldap.publish_certificates
}

// newUserSet builds a generation from cfg: the same source the pki
// commands use (newUserSource), with the directory's memberships cached
// by directoryGroups. Nothing is read from the directory here: a
// directory down at start or reload must not stop the gateway.
func newUserSet(cfg *config.Config, rt *runtime) (*userSet, error) {
	src, dir, err := newUserSource(cfg)
	if err != nil {
		return nil, err
	}
	set := &userSet{src: src, groups: staticGroupsFromConfig(cfg), dir: dir}
	if dir != nil {
		set.groups = newDirectoryGroups(dir.GroupMemberships, rt.log)
		set.publish = cfg.Users.LDAP.PublishCertificates
	}
	return set, nil
}

func (l *liveUsers) Users(ctx context.Context) ([]pki.User, error) {
	return l.cur.Load().src.Users(ctx)
}

func (l *liveUsers) SenderGroups(ctx context.Context, email string) ([]string, error) {
	return l.cur.Load().groups.SenderGroups(ctx, email)
}

// Refresh re-reads the directory's memberships (after each PKI sync);
// static groups need no reading.
func (l *liveUsers) Refresh(ctx context.Context) error {
	if dg, ok := l.cur.Load().groups.(*directoryGroups); ok {
		return dg.Refresh(ctx)
	}
	return nil
}

// errNoPublisher: publishing was configured at start, and the section now
// in force has no directory to publish to (reload refuses that change, so
// this is a guard, not a path).
var errNoPublisher = errors.New("users: no directory to publish certificates to")

func (l *liveUsers) Publish(ctx context.Context, u pki.User, certs []*x509.Certificate) error {
	d := l.cur.Load().dir
	if d == nil {
		return errNoPublisher
	}
	return d.Publish(ctx, u, certs)
}

func (l *liveUsers) Unpublish(ctx context.Context, email string, certs []*x509.Certificate) error {
	d := l.cur.Load().dir
	if d == nil {
		return errNoPublisher
	}
	return d.Unpublish(ctx, email, certs)
}

// close releases the current generation's directory connection.
func (l *liveUsers) close() {
	if d := l.cur.Load().dir; d != nil {
		d.Close()
	}
}

// reload puts cfg's [users] in place. Turning publishing on or off needs
// a restart: the rollout decides from the start whether it publishes at
// all, and a silent change would leave the GAL half published.
func (l *liveUsers) reload(cfg *config.Config, rt *runtime) error {
	next, err := newUserSet(cfg, rt)
	if err != nil {
		return fmt.Errorf("the new [users] cannot be used; the running users stay: %w", err)
	}
	old := l.cur.Load()
	if next.publish != old.publish {
		if next.dir != nil {
			next.dir.Close()
		}
		return fmt.Errorf("users.ldap.publish_certificates changed from %v to %v: restart serve for that; the running users stay", old.publish, next.publish)
	}
	l.cur.Store(next)
	if old.dir != nil {
		// An LDAP call in flight on the old connection fails and is
		// retried by its caller (the next sync, or the groups cache).
		old.dir.Close()
	}
	return nil
}

var (
	_ pki.UserSource    = (*liveUsers)(nil)
	_ pki.Publisher     = (*liveUsers)(nil)
	_ senderGroupSource = (*liveUsers)(nil)
)
