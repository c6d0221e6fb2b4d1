package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/policy"
)

// reloadableDecider is the pipeline's policy, swapped as a whole when
// serve gets SIGHUP (systemctl reload): messages in flight finish under
// the policy they started with, the next one uses the new one, and no
// connection is dropped.
type reloadableDecider struct {
	cur atomic.Pointer[policyDecider]
}

func newReloadableDecider(d policyDecider) *reloadableDecider {
	r := &reloadableDecider{}
	r.cur.Store(&d)
	return r
}

func (r *reloadableDecider) Decide(ctx context.Context, m *gateway.MessageFacts, rcpt string, hasCert bool) gateway.Decision {
	return r.cur.Load().Decide(ctx, m, rcpt, hasCert)
}

// compilePolicy reads the policy of a freshly loaded config file.
func compilePolicy(cfg *config.Config) (*policy.Policy, error) {
	pol, err := policy.FromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("the new policy does not compile: %w", err)
	}
	return pol, nil
}

// use puts pol in place for the next message.
func (r *reloadableDecider) use(pol *policy.Policy) {
	next := *r.cur.Load()
	next.p = pol
	r.cur.Store(&next)
}

// reloader is what SIGHUP (systemctl reload) re-reads: [policy] and
// [users]. Listeners, the store, the relay and the CA stay as they are
// (those need a restart, and the log says so when they differ).
type reloader struct {
	path    string
	policy  *reloadableDecider
	users   *liveUsers // nil when serve runs without the PKI
	rt      *runtime
	started *config.Config
	log     *slog.Logger
}

// reload reads the config file again and, when it is valid as a whole,
// puts its [policy] and [users] in place together. An invalid file, a
// policy that does not compile or users that cannot be set up change
// nothing: what runs stays, and the error names the key and line.
func (r *reloader) reload() (rules int, err error) {
	cfg, err := config.Load(r.path)
	if err != nil {
		return 0, fmt.Errorf("the config file does not load; what runs stays: %w", err)
	}
	pol, err := compilePolicy(cfg)
	if err != nil {
		return 0, fmt.Errorf("%w; what runs stays", err)
	}
	if r.users != nil {
		if err := r.users.reload(cfg, r.rt); err != nil {
			return 0, err
		}
	}
	r.policy.use(pol)
	for _, key := range restartOnly(r.started, cfg) {
		r.log.Warn("SIGHUP: this change takes effect only after a restart", "key", key)
	}
	return len(cfg.Policy.Rules), nil
}

// restartOnly names the sections a reload does not apply that differ
// between the running config and the file.
func restartOnly(running, file *config.Config) []string {
	var keys []string
	if running.SMTP.Listen != file.SMTP.Listen {
		keys = append(keys, "smtp.listen")
	}
	if running.HTTP.Listen != file.HTTP.Listen {
		keys = append(keys, "http.listen")
	}
	if running.Portal.Listen != file.Portal.Listen {
		keys = append(keys, "portal.listen")
	}
	if running.Relay.Mode != file.Relay.Mode || running.Relay.Smarthost != file.Relay.Smarthost || running.Relay.Dir != file.Relay.Dir {
		keys = append(keys, "relay")
	}
	if running.Store.Driver != file.Store.Driver || running.Store.DSN != file.Store.DSN {
		keys = append(keys, "store")
	}
	if running.DKIM.Selector != file.DKIM.Selector || running.DKIM.KeyFile != file.DKIM.KeyFile ||
		!slices.Equal(running.DKIM.Domains, file.DKIM.Domains) {
		keys = append(keys, "dkim")
	}
	return keys
}

// reloadOnHangup reloads at each SIGHUP until ctx ends.
func reloadOnHangup(ctx context.Context, r *reloader) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			n, err := r.reload()
			if err != nil {
				r.log.Error("SIGHUP: not reloaded", "err", err)
				continue
			}
			r.log.Info("SIGHUP: policy and users reloaded", "rules", n)
		}
	}
}
