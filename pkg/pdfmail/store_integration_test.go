package pdfmail_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// TestPasswordsWithSQLiteStore runs the modes against the real store: the
// generated password is stored sealed (not readable in the database file)
// and found again by preset and by generated-to-sender.
func TestPasswordsWithSQLiteStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	kr, err := secret.LoadOrCreateKeyring(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "sealgate.db")
	st, err := store.Open(ctx, store.Options{Driver: "sqlite", Path: dbPath, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var _ pdfmail.PasswordStore = st // the contract

	if err := st.SetPDFPassword(ctx, "preset@partner.example", []byte("Admin-Set-Password-1"), "preset"); err != nil {
		t.Fatal(err)
	}
	p, err := pdfmail.NewPasswords([]string{"preset", "generated-to-sender"}, pdfmail.PasswordDeps{Store: st, NotFound: store.ErrNotFound})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.For(ctx, "alice@example.org", "preset@partner.example", "x")
	if err != nil || string(res.Password) != "Admin-Set-Password-1" || res.Mode != pdfmail.ModePreset {
		t.Fatalf("preset: %v, %v", res, err)
	}
	first, err := p.For(ctx, "alice@example.org", "new@partner.example", "x")
	if err != nil || first.Mode != pdfmail.ModeGeneratedToSender || first.Notification == nil {
		t.Fatalf("generated: %v, %v", first, err)
	}
	again, err := p.For(ctx, "bob@example.org", "NEW@partner.example", "y")
	if err != nil || !bytes.Equal(again.Password, first.Password) || again.Notification != nil {
		t.Fatalf("second mail: %v, %v; want the stored password, no notification", again, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{dbPath, dbPath + "-wal"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if bytes.Contains(raw, first.Password) || bytes.Contains(raw, []byte("Admin-Set-Password-1")) {
			t.Errorf("%s holds a PDF password in plain", filepath.Base(f))
		}
	}
}

// TestGeneratedPasswordAcrossNodes: two gateways (each its own store
// handle and resolver, so the per-process mutex does not help) on one
// PostgreSQL database mail a new recipient at the same moment: both PDFs
// use one password and exactly one sender is told it.
func TestGeneratedPasswordAcrossNodes(t *testing.T) {
	ctx := context.Background()
	pg := testpeer.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	kr, err := secret.LoadOrCreateKeyring(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	const nodes = 2
	const rounds = 20
	var resolvers [nodes]*pdfmail.Passwords
	for i := range resolvers {
		st, err := store.Open(ctx, store.Options{Driver: "postgres", DSN: dsn, Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if resolvers[i], err = pdfmail.NewPasswords([]string{"generated-to-sender"}, pdfmail.PasswordDeps{Store: st, NotFound: store.ErrNotFound}); err != nil {
			t.Fatal(err)
		}
	}
	for r := range rounds {
		rcpt := fmt.Sprintf("new%02d@partner.example", r)
		var (
			wg   sync.WaitGroup
			res  [nodes]pdfmail.Resolution
			errs [nodes]error
		)
		for i := range resolvers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i], errs[i] = resolvers[i].For(ctx, fmt.Sprintf("sender%d@example.org", i), rcpt, "report")
			}()
		}
		wg.Wait()
		notes := 0
		for i := range res {
			if errs[i] != nil {
				t.Fatalf("node %d: %v", i, errs[i])
			}
			if !bytes.Equal(res[i].Password, res[0].Password) {
				t.Fatalf("%s: the nodes sealed with different passwords", rcpt)
			}
			if res[i].Notification != nil {
				notes++
			}
		}
		if notes != 1 {
			t.Fatalf("%s: %d senders told the password, want 1", rcpt, notes)
		}
	}
}
