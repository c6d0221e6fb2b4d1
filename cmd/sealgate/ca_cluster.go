package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/store"
)

// Nodes sharing one database share one embedded CA. The CA lives in each
// node's data_dir (its keys sealed by that node's master key), so a second
// node started with an empty data_dir would create a CA of its own and
// issue and revoke certificates that the first node's chain and CRL know
// nothing of. The store records the first CA's root; a node that has
// another one, or none yet while one is recorded, refuses to start and
// says what to copy.

// embeddedCAStore is what the check needs of the store.
type embeddedCAStore interface {
	RecordedEmbeddedCA(ctx context.Context) (store.EmbeddedCA, error)
	RecordEmbeddedCA(ctx context.Context, e store.EmbeddedCA) (store.EmbeddedCA, error)
}

// errOtherEmbeddedCA says which node's CA the database belongs to and how
// to bring this node in line.
func errOtherEmbeddedCA(dir string, rec store.EmbeddedCA, what string) error {
	return fmt.Errorf("pki: the database's certificates come from the embedded CA of node %s (root SHA-256 %s), "+
		"and %s: copy %s from that node (with the same master key) or use pki.issuer = \"stepca\" on every node",
		rec.Node, rec.RootSHA256, what, dir)
}

// checkEmbeddedCADir refuses to create a CA in dir when the database
// already belongs to one: run it before embeddedca.Init.
func checkEmbeddedCADir(ctx context.Context, st embeddedCAStore, dir string) error {
	if embeddedca.Exists(dir) {
		return nil
	}
	rec, err := st.RecordedEmbeddedCA(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return errOtherEmbeddedCA(dir, rec, "this node has no CA in "+dir)
}

// recordEmbeddedCA records ca's root as the database's CA, or refuses
// when another one is recorded.
func recordEmbeddedCA(ctx context.Context, st embeddedCAStore, ca *embeddedca.CA, dir, node string) error {
	sum := sha256.Sum256(ca.Root().Raw)
	fp := hex.EncodeToString(sum[:])
	rec, err := st.RecordEmbeddedCA(ctx, store.EmbeddedCA{RootSHA256: fp, Node: node})
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if rec.RootSHA256 != fp {
		return errOtherEmbeddedCA(dir, rec, "this node's root in "+dir+" is another one (SHA-256 "+fp+")")
	}
	return nil
}
