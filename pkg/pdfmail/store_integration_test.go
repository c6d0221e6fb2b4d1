package pdfmail_test

import (
	"bytes"
	"context"
	"errors"
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

var _ pdfmail.PasswordStore = (*store.Store)(nil) // the contract

// TestPasswordsWithSQLiteStore runs the modes against the real store: the
// generated password is stored sealed (not readable in the database file)
// and, once announced, found again by preset.
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

	if err := st.SetPDFPassword(ctx, "preset@partner.example", []byte("Admin-Set-Password-1"), "preset"); err != nil {
		t.Fatal(err)
	}
	p, err := pdfmail.NewPasswords([]string{"preset", "generated-to-sender"}, pdfmail.PasswordDeps{Store: st, NotFound: store.ErrNotFound})
	if err != nil {
		t.Fatal(err)
	}
	user := func(sender, rcpt string) pdfmail.Query {
		return pdfmail.Query{Sender: sender, SenderIsUser: true, Recipient: rcpt, Subject: "x"}
	}
	res, err := p.Resolve(ctx, user("alice@example.org", "preset@partner.example"))
	if err != nil || string(res.Password) != "Admin-Set-Password-1" || res.Mode != pdfmail.ModePreset || res.Notification != nil {
		t.Fatalf("preset: %v, %v", res, err)
	}
	first, err := p.Resolve(ctx, user("alice@example.org", "new@partner.example"))
	if err != nil || first.Mode != pdfmail.ModeGeneratedToSender || first.Notification == nil || first.Announce == nil {
		t.Fatalf("generated: %v, %v", first, err)
	}
	if err := first.Announce(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := p.Resolve(ctx, user("bob@example.org", "NEW@partner.example"))
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

// TestGeneratedPasswordWithRealStores runs the generated-to-sender rules
// against a SQLite file and a real PostgreSQL server (one server for all
// subtests: starting it costs seconds).
func TestGeneratedPasswordWithRealStores(t *testing.T) {
	kr, err := secret.LoadOrCreateKeyring(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	backends := []struct {
		name  string
		fresh func(t *testing.T) func(t *testing.T) store.Options // per scenario: a new database
	}{
		{"sqlite", func(*testing.T) func(t *testing.T) store.Options {
			return func(t *testing.T) store.Options {
				return store.Options{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "sealgate.db"), Keyring: kr}
			}
		}},
		{"postgres", func(t *testing.T) func(t *testing.T) store.Options {
			pg := testpeer.StartPostgres(t)
			return func(t *testing.T) store.Options {
				return store.Options{Driver: "postgres", DSN: pg.NewDatabase(t), Keyring: kr}
			}
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			fresh := b.fresh(t)
			t.Run("held then retried", func(t *testing.T) { heldThenRetried(t, fresh(t)) })
			t.Run("across nodes", func(t *testing.T) { acrossNodes(t, fresh(t)) })
		})
	}
}

// newNode opens one more store handle on the database of opts: each handle
// with its own resolver stands for one gateway node (the per-process mutex
// of GeneratedSource does not span them).
func newNode(t *testing.T, opts store.Options, modes ...string) *pdfmail.Passwords {
	t.Helper()
	st, err := store.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := pdfmail.NewPasswords(modes, pdfmail.PasswordDeps{Store: st, NotFound: store.ErrNotFound})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// heldThenRetried: mallory's forged message stores nothing; a user's held
// message leaves the password unannounced, so mallory's next try is still
// held, and the notice goes out with the next user's message that leaves
// (on another node too); after Announce no message carries a notice again.
func heldThenRetried(t *testing.T, opts store.Options) {
	ctx := context.Background()
	node1 := newNode(t, opts, "preset", "generated-to-sender")
	node2 := newNode(t, opts, "preset", "generated-to-sender")
	const partner = "partner@partner.example"
	steps := []struct {
		name     string
		node     *pdfmail.Passwords
		sender   string
		isUser   bool
		wantHeld bool
		wantNote bool
		leaves   bool
	}{
		{"forged sender: held, nothing stored", node1, "mallory@evil.test", false, true, false, false},
		{"user's first message generates, is held", node1, "alice@example.org", true, false, true, false},
		{"forged sender again: still held", node2, "mallory@evil.test", false, true, false, false},
		{"next user message (other node) announces and leaves", node2, "bob@example.org", true, false, true, true},
		{"after Announce: no notice", node1, "alice@example.org", true, false, false, true},
	}
	var password []byte
	for _, step := range steps {
		res, err := step.node.Resolve(ctx, pdfmail.Query{Sender: step.sender, SenderIsUser: step.isUser, Recipient: partner, Subject: "[secure] hi"})
		if step.wantHeld {
			if !errors.Is(err, pdfmail.ErrNoPassword) || res.Password != nil || res.Notification != nil {
				t.Fatalf("%s: %v, %v; want ErrNoPassword and nothing to send", step.name, res, err)
			}
			continue
		}
		if err != nil || (res.Notification != nil) != step.wantNote || (res.Announce != nil) != step.wantNote {
			t.Fatalf("%s: %v, %v; want notice %v", step.name, res, err, step.wantNote)
		}
		if password == nil {
			password = res.Password
		}
		if !bytes.Equal(res.Password, password) || (step.wantNote && !bytes.Contains(res.Notification, password)) {
			t.Fatalf("%s: not the one stored password, or a notice without it", step.name)
		}
		if step.leaves && res.Announce != nil {
			if err := res.Announce(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// acrossNodes: two gateways mail a new recipient at the same moment: both
// PDFs use one password (AddPDFPassword), and every notice carries that
// password to its own (known) sender. Both may be told: that is the
// accepted cost of announcing only what has left.
func acrossNodes(t *testing.T, opts store.Options) {
	ctx := context.Background()
	const nodes = 2
	const rounds = 10
	var resolvers [nodes]*pdfmail.Passwords
	for i := range resolvers {
		resolvers[i] = newNode(t, opts, "generated-to-sender")
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
				res[i], errs[i] = resolvers[i].Resolve(ctx, pdfmail.Query{Sender: fmt.Sprintf("sender%d@example.org", i), SenderIsUser: true, Recipient: rcpt, Subject: "report"})
			}()
		}
		wg.Wait()
		for i := range res {
			if errs[i] != nil {
				t.Fatalf("node %d: %v", i, errs[i])
			}
			if !bytes.Equal(res[i].Password, res[0].Password) {
				t.Fatalf("%s: the nodes sealed with different passwords", rcpt)
			}
			if res[i].Notification == nil || !bytes.Contains(res[i].Notification, res[0].Password) ||
				!bytes.Contains(res[i].Notification, fmt.Appendf(nil, "sender%d@example.org", i)) {
				t.Fatalf("%s: node %d's message would leave without the notice to its own sender", rcpt, i)
			}
		}
		if err := res[1].Announce(ctx); err != nil {
			t.Fatal(err)
		}
		later, err := resolvers[0].Resolve(ctx, pdfmail.Query{Sender: "sender0@example.org", SenderIsUser: true, Recipient: rcpt, Subject: "again"})
		if err != nil || later.Notification != nil || !bytes.Equal(later.Password, res[0].Password) {
			t.Fatalf("%s after Announce: %v, %v; want the password without a notice", rcpt, later, err)
		}
	}
}
