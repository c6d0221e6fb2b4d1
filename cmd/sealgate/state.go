package main

import (
	"context"
	"fmt"
	"os"
	"strings"

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
	dsn, err := storeDSN(cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, store.Options{Driver: cfg.Store.Driver, Path: cfg.DataPath("sealgate.db"), DSN: dsn, Keyring: kr})
	if err != nil {
		return nil, nil, fmt.Errorf("opening the store: %w", err)
	}
	return st, kr, nil
}

// storeDSN is store.dsn, or the first line of store.dsn_file.
func storeDSN(cfg *config.Config) (string, error) {
	if cfg.Store.DSNFile == "" {
		return cfg.Store.DSN, nil
	}
	b, err := os.ReadFile(cfg.Path(cfg.Store.DSNFile))
	if err != nil {
		return "", fmt.Errorf("store.dsn_file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "", fmt.Errorf("store.dsn_file %s is empty: put the connection string on its first line", cfg.Store.DSNFile)
	}
	return line, nil
}
