package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/store"
)

// lockPKI takes data_dir/pki.lock exclusively and, on PostgreSQL, the
// store's "pki" advisory lock, so that a CLI rollout, a `cert` change and
// any node's periodic sync in serve never work on the same users at once
// (two runs would both decide to issue; the key-first order keeps that
// from making duplicates, but the loser's users fail with a conflict).
// It does not wait: a held lock is an error saying who holds it.
func lockPKI(ctx context.Context, cfg *config.Config, st *store.Store) (unlock func(), err error) {
	path := cfg.DataPath("pki.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another rollout (or sealgate serve's PKI sync) is running: %s is locked; wait for it and retry", path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	unlockFile := func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
	release, err := st.TryLock(ctx, "pki")
	if err != nil {
		unlockFile()
		if errors.Is(err, store.ErrLocked) {
			return nil, errors.New("another node's rollout or PKI sync is running (PostgreSQL advisory lock \"pki\" is held); wait for it and retry")
		}
		return nil, fmt.Errorf("taking the PKI lock in the store: %w", err)
	}
	return func() { release(); unlockFile() }, nil
}
