package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockPKI takes data_dir/pki.lock exclusively, so that a CLI rollout, a
// `cert` change and serve's periodic sync never work on the same users at
// once (two runs could otherwise both decide to issue). serve should hold
// it around each Manager.Sync. With several gateway nodes on PostgreSQL
// each node has its own data_dir: run the sync on one node only.
func lockPKI(rt *pkiRuntime) (unlock func(), err error) {
	path := rt.Config.DataPath("pki.lock")
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
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
