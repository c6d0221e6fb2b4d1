package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// openKeyring creates data_dir (0700) and loads, creating on first use,
// pki.master_key_file.
func openKeyring(cfg *config.Config) (*secret.Keyring, error) {
	if err := os.MkdirAll(cfg.DataPath(""), 0o700); err != nil {
		return nil, fmt.Errorf("creating data_dir: %w", err)
	}
	kr, err := secret.LoadOrCreateKeyring(cfg.Path(cfg.PKI.MasterKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki.master_key_file: %w", err)
	}
	return kr, nil
}

// openStore opens the configured store with the master keyring that seals
// its secrets; every command and serve open it the same way.
func openStore(ctx context.Context, cfg *config.Config) (*store.Store, *secret.Keyring, error) {
	kr, err := openKeyring(cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, store.Options{Driver: cfg.Store.Driver, Path: cfg.DataPath("sealgate.db"), DSN: cfg.Store.DSN, Keyring: kr})
	if err != nil {
		return nil, nil, fmt.Errorf("opening the store: %w", err)
	}
	return st, kr, nil
}
