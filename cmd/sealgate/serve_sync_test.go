package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/metrics"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
)

// TestServeSyncTakesThePKILock: serve's periodic sync takes the same lock
// as `pki rollout`; while a rollout holds it the round is skipped with a
// log line (nothing issued), and the next round, with the lock free,
// issues. The metrics see a skipped round, then a successful one.
func TestServeSyncTakesThePKILock(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfgFile, []byte(pkiTestConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logw := &syncBuffer{b: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logw, nil))
	rt, _, mgr, pipeline := servePieces(t, ctx, cfg, log)

	// A CLI rollout holds the lock.
	unlock, err := lockPKI(ctx, cfg, rt.store)
	if err != nil {
		t.Fatal(err)
	}
	lock := func() (func(), error) { return lockPKI(ctx, cfg, rt.store) }
	rounds := &recordedRounds{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pkiSync(ctx, mgr, pipeline.Signer.(*pkiSigner), rt.groups, lock, 300*time.Millisecond, log, rounds)
	}()
	waitFor(t, func() bool { return strings.Contains(logw.String(), "pki sync skipped this round") })
	if all, _ := rt.store.Certificates(ctx, ""); len(all) != 0 {
		t.Fatalf("the sync issued %d certificates while the rollout held the lock", len(all))
	}
	unlock()
	waitFor(t, func() bool {
		all, _ := rt.store.Certificates(ctx, "")
		return len(all) == 2 // alice and bob; eve is not in users.groups
	})
	cancel()
	<-done
	got := rounds.all()
	if len(got) < 2 || got[0].Result != metrics.SyncSkipped || !slices.ContainsFunc(got, func(r metrics.SyncRound) bool {
		return r.Result == metrics.SyncSuccess && r.Issued == 2
	}) {
		t.Errorf("rounds seen by the metrics: %+v; want skipped first, then a success that issued 2", got)
	}
}

// recordedRounds is a syncObserver that keeps what it saw.
type recordedRounds struct {
	mu     sync.Mutex
	rounds []metrics.SyncRound
}

func (r *recordedRounds) ObserveSync(s metrics.SyncRound) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rounds = append(r.rounds, s)
}

func (r *recordedRounds) all() []metrics.SyncRound {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rounds)
}

// servePieces opens what serve opens from cfg (runtime, PKI, pipeline),
// closed when the test ends.
func servePieces(t *testing.T, ctx context.Context, cfg *config.Config, log *slog.Logger) (*runtime, *embeddedca.CA, *pki.Manager, *gateway.Pipeline) {
	t.Helper()
	rt, err := openRuntime(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.store.Close() })
	ca, mgr, err := openPKI(ctx, rt)
	t.Cleanup(rt.Close) // runs before the store's Close
	if err != nil {
		t.Fatal(err)
	}
	pipeline, err := buildPipeline(cfg, rt, mgr)
	if err != nil {
		t.Fatal(err)
	}
	return rt, ca, mgr, pipeline
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer the logger and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
