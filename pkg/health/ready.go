// Package health answers the internal listener's /readyz: whether this
// node can take mail now (its store answers, its spool takes files, its
// certificate issuer is there). /healthz (liveness) stays trivial and is
// not here.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// Check is one named readiness condition; Run returns nil when it holds.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Ready runs its checks concurrently, each bounded by Timeout (default
// 3s), and answers 200 when all pass, 503 otherwise. The body names every
// check and whether it passed; why one failed goes to the log only (an
// error may carry a host, a path or a user name, which is nobody's
// business on an HTTP answer).
type Ready struct {
	Checks  []Check
	Timeout time.Duration
	Logger  *slog.Logger
}

// Report is the JSON body of /readyz.
type Report struct {
	Status string        `json:"status"` // "ready" | "unavailable"
	Checks []CheckResult `json:"checks"`
	Failed []string      `json:"failed,omitempty"`
}

// CheckResult is one check's outcome.
type CheckResult struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
}

// Run runs every check and reports.
func (r *Ready) Run(ctx context.Context) Report {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := Report{Status: "ready", Checks: make([]CheckResult, len(r.Checks))}
	var wg sync.WaitGroup
	for i, c := range r.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			err := runCheck(cctx, c)
			rep.Checks[i] = CheckResult{Name: c.Name, OK: err == nil}
			if err != nil {
				log.Warn("readiness check failed", "check", c.Name, "err", err)
			}
		}()
	}
	wg.Wait()
	for _, c := range rep.Checks {
		if !c.OK {
			rep.Status = "unavailable"
			rep.Failed = append(rep.Failed, c.Name)
		}
	}
	return rep
}

// runCheck runs c, but returns when ctx ends even if c does not honour
// it (a check stuck in a syscall must not hold /readyz).
func runCheck(ctx context.Context, c Check) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- c.Run(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer: %w", ctx.Err())
	}
}

// ServeHTTP answers /readyz.
func (r *Ready) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rep := r.Run(req.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if rep.Status != "ready" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rep)
}

// DirWritable checks that a file can be created, written, synced and
// removed in dir (the spool). The probe is named tmp-readyz-*, which the
// spool removes at start should a crash leave one behind.
func DirWritable(dir string) func(context.Context) error {
	return func(context.Context) error {
		f, err := os.CreateTemp(dir, "tmp-readyz-*")
		if err != nil {
			return fmt.Errorf("creating a file in %s: %w", dir, err)
		}
		name := f.Name()
		_, werr := f.Write([]byte("ready\n"))
		serr := f.Sync()
		cerr := f.Close()
		rerr := os.Remove(name)
		if err := errors.Join(werr, serr, cerr, rerr); err != nil {
			return fmt.Errorf("writing a file in %s: %w", dir, err)
		}
		return nil
	}
}
