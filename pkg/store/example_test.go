package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// The wiring every command does: the master key first, then the store.
func ExampleOpen() {
	dataDir, err := os.MkdirTemp("", "sealgate-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dataDir)
	ctx := context.Background()

	kr, err := secret.LoadOrCreateKeyring(filepath.Join(dataDir, "master.key")) // pki.master_key_file
	if err != nil {
		panic(err)
	}
	st, err := store.Open(ctx, store.Options{Driver: "sqlite", Path: filepath.Join(dataDir, "sealgate.db"), Keyring: kr})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	if err := st.SetPDFPassword(ctx, "partner@example.org", []byte("chosen in the portal"), "portal"); err != nil {
		panic(err)
	}
	pw, source, err := st.PDFPassword(ctx, "Partner@Example.org")
	fmt.Printf("%s (%s) %v\n", pw, source, err)
	// Output: chosen in the portal (portal) <nil>
}
