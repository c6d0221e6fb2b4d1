package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestGroupCommitHonoursCallerContext: a caller whose context ends (cancel
// or deadline) while its write waits for the writer, or while its
// transaction is under way, gets its context's error then, not when the
// writer is done; a write that was still waiting is not written at all,
// and the others' writes go on. The writer is held in its commit by a hook,
// so nothing here depends on timing; without the fix the caller waits for
// the writer and the liveness guard fails the test.
func TestGroupCommitHonoursCallerContext(t *testing.T) {
	ends := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc, func())
		want error
	}{
		{"cancelled", func() (context.Context, context.CancelFunc, func()) {
			c, cancel := context.WithCancel(context.Background())
			return c, cancel, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc, func()) {
			// A deadline an hour ahead that passes when end is called.
			d, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
			end := make(chan struct{})
			return &deadlineCtx{Context: d, ended: end}, cancel, func() { close(end) }
		}, context.DeadlineExceeded},
	}
	for _, end := range ends {
		for _, where := range []string{"waiting", "in its transaction"} {
			t.Run(end.name+" "+where, func(t *testing.T) {
				forEachBackend(t, func(t *testing.T, b backend) {
					s := b.open(t, testKeyring(t))
					g := NewGroupCommit(s)
					entered := make(chan int, 8)
					release := make(chan struct{}, 8)
					g.beforeCommit = func(n int) { entered <- n; <-release }
					defer func() {
						close(release)
						g.Close()
					}()
					bg := context.Background()
					put := func(ctx context.Context, id string) chan error {
						ch := make(chan error, 1)
						go func() {
							ch <- g.PutQueueEntry(ctx, QueueEntry{ID: id, Node: "n1", State: "queued"})
						}()
						return ch
					}
					queued := func(n int) {
						t.Helper()
						waitUntil(t, "writes queued for the writer", func() bool { return len(g.ops) == n })
					}
					x := put(bg, "x") // holds the writer in its commit
					if n := <-entered; n != 1 {
						t.Fatalf("first batch of %d", n)
					}
					ctx, stop, endIt := end.ctx()
					defer stop()
					a := put(bg, "a")
					bch := put(ctx, "b")
					queued(2)
					if where != "waiting" {
						release <- struct{}{} // x commits; a and b are the next batch
						if n := <-entered; n != 2 {
							t.Fatalf("second batch of %d, want a and b", n)
						}
					}
					endIt()
					select {
					case err := <-bch:
						if !errors.Is(err, end.want) {
							t.Fatalf("the caller got %v, want %v", err, end.want)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("the caller whose context ended is still waiting for the writer")
					}
					if where == "waiting" {
						release <- struct{}{} // x
						if n := <-entered; n != 1 {
							t.Fatalf("batch after x of %d, want a alone (b abandoned)", n)
						}
					}
					release <- struct{}{}
					for _, ch := range []chan error{x, a} {
						if err := <-ch; err != nil {
							t.Fatalf("another writer failed: %v", err)
						}
					}
					for _, id := range []string{"x", "a"} {
						if _, err := s.QueueEntry(bg, id); err != nil {
							t.Errorf("%s: %v", id, err)
						}
					}
					if where == "waiting" {
						if _, err := s.QueueEntry(bg, "b"); !errors.Is(err, ErrNotFound) {
							t.Errorf("the abandoned write was written: %v", err)
						}
					}
				})
			})
		}
	}
}

// deadlineCtx is a context whose deadline passes when ended is closed,
// without the test waiting on a clock.
type deadlineCtx struct {
	context.Context
	ended chan struct{}
}

func (c *deadlineCtx) Done() <-chan struct{} { return c.ended }

func (c *deadlineCtx) Err() error {
	select {
	case <-c.ended:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestBatchContextDeadline(t *testing.T) {
	base := time.Now().Add(time.Hour)
	with := func(d time.Time) *batchOp {
		c, cancel := context.WithDeadline(context.Background(), d)
		t.Cleanup(cancel)
		return &batchOp{ctx: context.WithoutCancel(c), caller: c}
	}
	without := &batchOp{ctx: context.Background(), caller: context.Background()}
	for _, tc := range []struct {
		name  string
		batch []*batchOp
		want  time.Time // zero: no deadline
	}{
		{"one caller", []*batchOp{with(base)}, base},
		{"the latest of all", []*batchOp{with(base), with(base.Add(time.Minute)), with(base.Add(-time.Minute))}, base.Add(time.Minute)},
		{"one without a deadline", []*batchOp{with(base), without}, time.Time{}},
	} {
		ctx, cancel := batchContext(tc.batch)
		d, ok := ctx.Deadline()
		cancel()
		if ok != !tc.want.IsZero() || ok && !d.Equal(tc.want) {
			t.Errorf("%s: deadline %v (%t), want %v", tc.name, d, ok, tc.want)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
