package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
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

// reloadPolicy reads the config file again and, when it is valid, puts
// its [policy] in place. An invalid file changes nothing: the running
// policy stays, and the log says which key on which line is wrong.
func (r *reloadableDecider) reloadPolicy(path string) (rules int, err error) {
	cfg, err := config.Load(path)
	if err != nil {
		return 0, fmt.Errorf("the config file does not load; the running policy stays: %w", err)
	}
	pol, err := policy.FromConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("the new policy does not compile; the running policy stays: %w", err)
	}
	old := r.cur.Load()
	next := *old
	next.p = pol
	r.cur.Store(&next)
	return len(cfg.Policy.Rules), nil
}

// reloadOnHangup reloads the policy at each SIGHUP until ctx ends.
func reloadOnHangup(ctx context.Context, r *reloadableDecider, path string, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			n, err := r.reloadPolicy(path)
			if err != nil {
				log.Error("SIGHUP: policy not reloaded", "err", err)
				continue
			}
			log.Info("SIGHUP: policy reloaded", "rules", n)
		}
	}
}
