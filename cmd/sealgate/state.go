package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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

// nodeID is this gateway node's name in the shared queue and the events:
// smtp.hostname and a random suffix, generated once and kept in
// data_dir/node-id. Two nodes may well share a host name (behind one
// load balancer name); sharing a node name made each drop the other's
// queue entries as "delivered before a crash".
func nodeID(cfg *config.Config) (string, error) {
	path := cfg.DataPath("node-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
		return "", fmt.Errorf("%s is empty: remove it and a new node id is made", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading the node id: %w", err)
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return "", err
	}
	id := cfg.SMTP.Hostname + "-" + hex.EncodeToString(suffix)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nodeID(cfg) // another process of this node won the race
	}
	if err != nil {
		return "", fmt.Errorf("writing the node id: %w", err)
	}
	if _, err := f.WriteString(id + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("writing the node id: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("writing the node id: %w", err)
	}
	return id, f.Close()
}
