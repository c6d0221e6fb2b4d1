package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/secret"
)

// backend is one database the whole suite runs against.
type backend struct {
	name string
	// fresh returns the options (without keyring) of a new, empty
	// database that lives until the test ends.
	fresh func(t testing.TB) Options
}

// open opens a fresh, empty store with keyring kr.
func (b backend) open(t testing.TB, kr *secret.Keyring) *Store {
	t.Helper()
	return openWith(t, b.fresh(t), kr)
}

func openWith(t testing.TB, opts Options, kr *secret.Keyring) *Store {
	t.Helper()
	opts.Keyring = kr
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open %s: %v", opts.Driver, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sqliteBackend() backend {
	return backend{"sqlite", func(t testing.TB) Options {
		return Options{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "data", "sealgate.db")}
	}}
}

func openSQLiteAt(t testing.TB, path string, kr *secret.Keyring) *Store {
	t.Helper()
	return openWith(t, Options{Driver: "sqlite", Path: path}, kr)
}

// backends lists what the driver-independent tests run against.
// backendsExtra lets postgres_test.go add PostgreSQL.
func backends() []backend { return append([]backend{sqliteBackend()}, backendsExtra...) }

var backendsExtra []backend

func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

func testKeyring(t testing.TB) *secret.Keyring {
	t.Helper()
	k := make([]byte, secret.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	kr, err := secret.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

var ctx = context.Background()

func TestOpenRejects(t *testing.T) {
	kr := testKeyring(t)
	dir := t.TempDir()
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"no keyring", Options{Path: filepath.Join(dir, "a.db")}, "no keyring"},
		{"unknown driver", Options{Driver: "mysql", Keyring: kr}, "store.driver"},
		{"no path", Options{Driver: "sqlite", Keyring: kr}, "data_dir"},
		{"question mark", Options{Path: filepath.Join(dir, "a?.db"), Keyring: kr}, "'?'"},
		{"postgres without dsn", Options{Driver: "postgres", Keyring: kr}, "store.dsn"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(ctx, tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestMigrateFromEmptyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "sealgate.db")
	kr := testKeyring(t)
	s, err := Open(ctx, Options{Path: path, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	type applied struct {
		version   int
		appliedAt int64
	}
	read := func(s *Store) []applied {
		rows, err := s.db.QueryContext(ctx, `SELECT version, applied_at FROM schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []applied
		for rows.Next() {
			var a applied
			if err := rows.Scan(&a.version, &a.appliedAt); err != nil {
				t.Fatal(err)
			}
			out = append(out, a)
		}
		return out
	}
	first := read(s)
	if len(first) != len(migrations) || first[len(first)-1].version != SchemaVersion() {
		t.Fatalf("applied %v, want versions 1..%d", first, SchemaVersion())
	}
	for _, table := range []string{"pdf_passwords", "private_keys", "certificates", "certificate_addresses", "recipient_certs", "audit_log", "queue"} {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
	var mode string
	if err := s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := s.db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v; want 1", fk, err)
	}
	if err := s.Audit(ctx, AuditEvent{Action: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", p, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %04o, want 0700", st.Mode().Perm())
	}
	s.Close()

	// Re-opening is a no-op: nothing re-applied, data kept.
	s2 := openSQLiteAt(t, path, kr)
	if again := read(s2); len(again) != len(first) || again[0] != first[0] {
		t.Fatalf("re-open changed schema_migrations: %v -> %v", first, again)
	}
	if ev, err := s2.AuditEvents(ctx, time.Time{}); err != nil || len(ev) != 1 {
		t.Fatalf("after re-open: %v events, %v", len(ev), err)
	}
}

func TestOpenTightensLooseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sealgate.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	openSQLiteAt(t, path, testKeyring(t))
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o after open, want 0600", st.Mode().Perm())
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sealgate.db")
	kr := testKeyring(t)
	s := openSQLiteAt(t, path, kr)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(ctx, Options{Path: path, Keyring: kr})
	if err == nil || !strings.Contains(err.Error(), "upgrade sealgate") {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestPDFPasswords(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		if _, _, err := s.PDFPassword(ctx, "nobody@example.com"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing password: %v, want ErrNotFound", err)
		}
		if err := s.SetPDFPassword(ctx, "Alice@Example.com", []byte("first-pw"), "generated"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPDFPassword(ctx, "bob@example.com", []byte("bob-pw"), "portal"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ email, pw, source string }{
			{"alice@example.com", "first-pw", "generated"},
			{"ALICE@EXAMPLE.COM", "first-pw", "generated"},
			{"bob@example.com", "bob-pw", "portal"},
		} {
			pw, src, err := s.PDFPassword(ctx, tc.email)
			if err != nil || string(pw) != tc.pw || src != tc.source {
				t.Errorf("PDFPassword(%s) = %q, %q, %v; want %q, %q", tc.email, pw, src, err, tc.pw, tc.source)
			}
		}
		// Replace.
		if err := s.SetPDFPassword(ctx, "alice@example.com", []byte("second-pw"), "portal"); err != nil {
			t.Fatal(err)
		}
		if pw, src, _ := s.PDFPassword(ctx, "alice@example.com"); string(pw) != "second-pw" || src != "portal" {
			t.Errorf("after replace: %q %q", pw, src)
		}
		if err := s.DeletePDFPassword(ctx, "ALICE@example.com"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.PDFPassword(ctx, "alice@example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete: %v", err)
		}
		if err := s.DeletePDFPassword(ctx, "alice@example.com"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v, want ErrNotFound", err)
		}
		for _, bad := range []struct {
			email string
			pw    []byte
		}{{"", []byte("x")}, {"a@b", nil}} {
			if err := s.SetPDFPassword(ctx, bad.email, bad.pw, "x"); err == nil {
				t.Errorf("SetPDFPassword(%q, %q) accepted", bad.email, bad.pw)
			}
			if _, _, err := s.AddPDFPassword(ctx, bad.email, bad.pw, "x"); err == nil {
				t.Errorf("AddPDFPassword(%q, %q) accepted", bad.email, bad.pw)
			}
		}
		// Add only where none is: the first wins, later ones get it.
		for _, tc := range []struct {
			email, pw, want string
			added           bool
		}{
			{"carol@example.com", "carol-1", "carol-1", true},
			{"CAROL@example.com", "carol-2", "carol-1", false},
			{"bob@example.com", "bob-2", "bob-pw", false},
		} {
			got, added, err := s.AddPDFPassword(ctx, tc.email, []byte(tc.pw), "generated")
			if err != nil || string(got) != tc.want || added != tc.added {
				t.Errorf("AddPDFPassword(%s, %s) = %q, %v, %v; want %q, %v", tc.email, tc.pw, got, added, err, tc.want, tc.added)
			}
		}
		if pw, src, _ := s.PDFPassword(ctx, "carol@example.com"); string(pw) != "carol-1" || src != "generated" {
			t.Errorf("after adds: %q %q", pw, src)
		}
	})
}

// TestPDFPasswordAnnounced: a password stored by AddPDFPassword (a
// generated one) is unannounced until MarkPDFPasswordAnnounced confirms
// exactly that password; a stale confirmation for an older password must
// not mark a newer one that nobody has been told.
func TestPDFPasswordAnnounced(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		state := func(email string) (string, bool) {
			t.Helper()
			pw, _, announced, err := s.PDFPasswordState(ctx, email)
			if err != nil {
				t.Fatalf("PDFPasswordState(%s): %v", email, err)
			}
			return string(pw), announced
		}
		if _, _, err := s.AddPDFPassword(ctx, "new@partner.example", []byte("generated-1"), "generated-to-sender"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPDFPassword(ctx, "preset@partner.example", []byte("admin-chosen"), "preset"); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name          string
			email, pw     string // MarkPDFPasswordAnnounced(email, pw)
			wantMarked    bool
			check         string // then the state of this recipient
			wantPW        string
			wantAnnounced bool
		}{
			{"added is unannounced", "", "", false, "new@partner.example", "generated-1", false},
			{"set by an admin is announced", "", "", false, "preset@partner.example", "admin-chosen", true},
			{"wrong password marks nothing", "new@partner.example", "guessed", false, "new@partner.example", "generated-1", false},
			{"unknown recipient marks nothing", "nobody@partner.example", "generated-1", false, "new@partner.example", "generated-1", false},
			{"the stored password is marked", "NEW@partner.example", "generated-1", true, "new@partner.example", "generated-1", true},
			{"marking again is harmless", "new@partner.example", "generated-1", true, "new@partner.example", "generated-1", true},
		}
		for _, st := range steps {
			if st.email != "" {
				marked, err := s.MarkPDFPasswordAnnounced(ctx, st.email, []byte(st.pw))
				if err != nil || marked != st.wantMarked {
					t.Errorf("%s: MarkPDFPasswordAnnounced = %v, %v; want %v", st.name, marked, err, st.wantMarked)
				}
			}
			if pw, announced := state(st.check); pw != st.wantPW || announced != st.wantAnnounced {
				t.Errorf("%s: state %q announced=%v; want %q announced=%v", st.name, pw, announced, st.wantPW, st.wantAnnounced)
			}
		}

		// The password is replaced by a new generated one; the old
		// message's late confirmation must leave the new one unannounced.
		if err := s.DeletePDFPassword(ctx, "new@partner.example"); err != nil {
			t.Fatal(err)
		}
		if _, added, err := s.AddPDFPassword(ctx, "new@partner.example", []byte("generated-2"), "generated-to-sender"); err != nil || !added {
			t.Fatalf("re-add: %v, %v", added, err)
		}
		if marked, err := s.MarkPDFPasswordAnnounced(ctx, "new@partner.example", []byte("generated-1")); err != nil || marked {
			t.Errorf("stale confirmation: marked=%v, %v; want false", marked, err)
		}
		if pw, announced := state("new@partner.example"); pw != "generated-2" || announced {
			t.Errorf("after a stale confirmation: %q announced=%v; want generated-2 unannounced", pw, announced)
		}
		// A losing AddPDFPassword does not touch the state either.
		if _, added, err := s.AddPDFPassword(ctx, "preset@partner.example", []byte("generated-3"), "generated-to-sender"); err != nil || added {
			t.Fatalf("add over a preset: %v, %v", added, err)
		}
		if pw, announced := state("preset@partner.example"); pw != "admin-chosen" || !announced {
			t.Errorf("preset after a losing add: %q announced=%v", pw, announced)
		}
	})
}

// TestPDFPasswordAnnouncedMigration: rows written before schema version 3
// were announced when generated (the old code queued the notice at once),
// so the migration marks them announced rather than re-announcing every
// partner's password to whoever mails them next.
func TestPDFPasswordAnnouncedMigration(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		opts := b.fresh(t)
		kr := testKeyring(t)
		func() {
			all := migrations
			defer func() { migrations = all }()
			migrations = all[:2]
			old := openWith(t, opts, kr)
			defer old.Close()
			if _, err := old.db.ExecContext(ctx, `INSERT INTO pdf_passwords (email_key, sealed, source, updated_at) VALUES ($1, $2, $3, $4)`,
				"old@partner.example", []byte("sealed"), "generated-to-sender", int64(1234)); err != nil {
				t.Fatal(err)
			}
		}()

		s := openWith(t, opts, kr)
		var announcedAt sql.NullInt64
		if err := s.db.QueryRowContext(ctx, `SELECT announced_at FROM pdf_passwords WHERE email_key = $1`, "old@partner.example").Scan(&announcedAt); err != nil {
			t.Fatal(err)
		}
		if !announcedAt.Valid || announcedAt.Int64 != 1234 {
			t.Errorf("announced_at after the migration = %v, want 1234 (the row's updated_at)", announcedAt)
		}
	})
}

func TestKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		k1 := []byte("\x30\x82pkcs8-key-one")
		k2 := []byte("\x30\x82pkcs8-key-two")
		if _, err := s.Key(ctx, "k1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing key: %v", err)
		}
		if err := s.PutKey(ctx, "k1", k1); err != nil {
			t.Fatal(err)
		}
		if err := s.PutKey(ctx, "k2", k2); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Key(ctx, "k1"); err != nil || !bytes.Equal(got, k1) {
			t.Fatalf("Key(k1) = %q, %v", got, err)
		}
		if err := s.PutKey(ctx, "k1", k1); err != nil {
			t.Errorf("storing the same key again: %v", err)
		}
		if err := s.PutKey(ctx, "k1", k2); !errors.Is(err, ErrConflict) {
			t.Errorf("overwriting k1 with another key: %v, want ErrConflict", err)
		}
		if got, _ := s.Key(ctx, "k1"); !bytes.Equal(got, k1) {
			t.Error("k1 changed after a refused overwrite")
		}
		if err := s.DeleteKey(ctx, "k1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Key(ctx, "k1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete: %v", err)
		}
		if err := s.DeleteKey(ctx, "k1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if got, _ := s.Key(ctx, "k2"); !bytes.Equal(got, k2) {
			t.Error("k2 lost")
		}
		if err := s.PutKey(ctx, "", k1); err == nil {
			t.Error("empty id accepted")
		}
	})
}

// TestSecretsNotPlaintextOnDisk greps the raw database files for the
// secrets stored through the API.
func TestSecretsNotPlaintextOnDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sealgate.db")
	s := openSQLiteAt(t, path, testKeyring(t))
	password := []byte("Very-Distinctive-PDF-Password-4711")
	key := bytes.Repeat([]byte("PRIVATE-KEY-MATERIAL"), 20)
	if err := s.SetPDFPassword(ctx, "carol@example.com", password, "portal"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKey(ctx, "carol-key", key); err != nil {
		t.Fatal(err)
	}
	// A certificate is not secret: it must be findable in the file, which
	// proves the grep below looks at the right bytes.
	der := []byte("PUBLIC-CERTIFICATE-DER-MARKER")
	if err := s.PutCertificate(ctx, Certificate{Serial: "01", Email: "carol@example.com", DER: der, State: CertActive}); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	if !bytes.Contains(raw, der) {
		t.Fatal("control value not found in the database files: the check reads the wrong bytes")
	}
	if bytes.Contains(raw, password) {
		t.Error("PDF password found in plain in the database file")
	}
	if bytes.Contains(raw, key[:20]) {
		t.Error("private key found in plain in the database file")
	}
}

// TestSealedValuesBoundToRow: copying a sealed value into another row
// (as an attacker with write access to the database could) does not open.
func TestSealedValuesBoundToRow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		if err := s.SetPDFPassword(ctx, "alice@example.com", []byte("alice-pw"), "portal"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPDFPassword(ctx, "mallory@example.com", []byte("mallory-pw"), "portal"); err != nil {
			t.Fatal(err)
		}
		if err := s.PutKey(ctx, "alice", []byte("alice-key")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutKey(ctx, "mallory", []byte("mallory-key")); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`UPDATE pdf_passwords SET sealed = (SELECT sealed FROM pdf_passwords WHERE email_key = 'alice@example.com') WHERE email_key = 'mallory@example.com'`,
			`UPDATE private_keys SET sealed = (SELECT sealed FROM private_keys WHERE id = 'alice') WHERE id = 'mallory'`,
		} {
			if _, err := s.db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if pw, _, err := s.PDFPassword(ctx, "mallory@example.com"); !errors.Is(err, secret.ErrOpen) || pw != nil {
			t.Errorf("swapped PDF password: %q, %v; want secret.ErrOpen", pw, err)
		}
		if k, err := s.Key(ctx, "mallory"); !errors.Is(err, secret.ErrOpen) || k != nil {
			t.Errorf("swapped key: %q, %v; want secret.ErrOpen", k, err)
		}

		// One flipped bit in a stored value fails closed too.
		var sealed []byte
		if err := s.db.QueryRowContext(ctx, `SELECT sealed FROM private_keys WHERE id = $1`, "alice").Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		sealed[len(sealed)/2] ^= 0x80
		if _, err := s.db.ExecContext(ctx, `UPDATE private_keys SET sealed = $1 WHERE id = $2`, sealed, "alice"); err != nil {
			t.Fatal(err)
		}
		if k, err := s.Key(ctx, "alice"); !errors.Is(err, secret.ErrOpen) || k != nil {
			t.Errorf("flipped bit: %q, %v; want secret.ErrOpen", k, err)
		}
	})
}

func TestWrongMasterKeyFailsClosed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		opts := b.fresh(t)
		s := openWith(t, opts, testKeyring(t))
		if err := s.SetPDFPassword(ctx, "a@example.com", []byte("pw"), "portal"); err != nil {
			t.Fatal(err)
		}
		if err := s.PutKey(ctx, "k", []byte("key")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s2 := openWith(t, opts, testKeyring(t))
		if pw, _, err := s2.PDFPassword(ctx, "a@example.com"); !errors.Is(err, secret.ErrOpen) || pw != nil {
			t.Errorf("PDFPassword under the wrong master key: %q, %v", pw, err)
		}
		if k, err := s2.Key(ctx, "k"); !errors.Is(err, secret.ErrOpen) || k != nil {
			t.Errorf("Key under the wrong master key: %q, %v", k, err)
		}
		// Nor can the wrong key be used to overwrite the key it cannot read.
		if err := s2.PutKey(ctx, "k", []byte("other")); err == nil {
			t.Error("PutKey replaced a key it could not open")
		}
	})
}

func TestResealAfterRotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		keyPath := filepath.Join(t.TempDir(), "master.key")
		opts := b.fresh(t)
		kr1, err := secret.LoadOrCreateKeyring(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		s := openWith(t, opts, kr1)
		if err := s.SetPDFPassword(ctx, "a@example.com", []byte("pw-a"), "portal"); err != nil {
			t.Fatal(err)
		}
		if err := s.PutKey(ctx, "k", []byte("key-k")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddPortalToken(ctx, PortalToken{Hash: "r1", Kind: "reply", Email: "a@example.com", Subject: "Merger",
			ExpiresAt: time.Now().Add(time.Hour)}, false); err != nil {
			t.Fatal(err)
		}
		s.Close()

		oldPath, err := secret.RotateKeyFile(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		kr2, err := secret.LoadOrCreateKeyring(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		s2 := openWith(t, opts, kr2)
		// Old values open through the old key; new ones use the new key.
		if pw, _, err := s2.PDFPassword(ctx, "a@example.com"); err != nil || string(pw) != "pw-a" {
			t.Fatalf("old value after rotation: %q, %v", pw, err)
		}
		if err := s2.SetPDFPassword(ctx, "b@example.com", []byte("pw-b"), "portal"); err != nil {
			t.Fatal(err)
		}
		n, err := s2.Reseal(ctx)
		if err != nil || n != 3 {
			t.Fatalf("Reseal = %d, %v; want 3 (a's password, key k, the reply link's subject)", n, err)
		}
		if n, err := s2.Reseal(ctx); err != nil || n != 0 {
			t.Fatalf("second Reseal = %d, %v; want 0", n, err)
		}
		s2.Close()

		// With the old key file gone, everything still opens.
		if err := os.Remove(oldPath); err != nil {
			t.Fatal(err)
		}
		kr3, err := secret.LoadOrCreateKeyring(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		s3 := openWith(t, opts, kr3)
		for email, want := range map[string]string{"a@example.com": "pw-a", "b@example.com": "pw-b"} {
			if pw, _, err := s3.PDFPassword(ctx, email); err != nil || string(pw) != want {
				t.Errorf("%s after reseal: %q, %v", email, pw, err)
			}
		}
		if k, err := s3.Key(ctx, "k"); err != nil || string(k) != "key-k" {
			t.Errorf("key after reseal: %q, %v", k, err)
		}
		if tok, err := s3.LivePortalToken(ctx, "r1"); err != nil || tok.Subject != "Merger" {
			t.Errorf("reply link after reseal: %+v, %v", tok, err)
		}
	})
}

func TestCertificates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		day := func(n int) time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n) }
		certs := []Certificate{
			{Serial: "0a", Email: "Alice@Example.com", Addresses: []string{"alice@example.com", "a.smith@example.com"},
				DER: []byte("der-0a"), KeyID: "key-0a", NotBefore: day(0), NotAfter: day(365), State: CertSuperseded},
			{Serial: "0b", Email: "alice@example.com", Addresses: []string{"alice@example.com"},
				DER: []byte("der-0b"), KeyID: "key-0b", NotBefore: day(300), NotAfter: day(665), State: CertActive},
			{Serial: "0c", Email: "bob@example.com", Addresses: []string{"bob@example.com"},
				DER: []byte("der-0c"), KeyID: "key-0c", NotBefore: day(10), NotAfter: day(375), State: CertActive},
		}
		for _, c := range certs {
			if err := s.PutCertificate(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		serials := func(cs []Certificate) string {
			var out []string
			for _, c := range cs {
				out = append(out, c.Serial)
			}
			return strings.Join(out, ",")
		}
		for _, tc := range []struct{ email, want string }{
			{"alice@example.com", "0b,0a"},
			{"ALICE@example.com", "0b,0a"},
			{"a.smith@example.com", "0a"},
			{"bob@example.com", "0c"},
			{"", "0b,0c,0a"},
			{"nobody@example.com", ""},
		} {
			got, err := s.Certificates(ctx, tc.email)
			if err != nil {
				t.Fatal(err)
			}
			if serials(got) != tc.want {
				t.Errorf("Certificates(%q) = %s, want %s", tc.email, serials(got), tc.want)
			}
		}

		got, err := s.CertificateBySerial(ctx, "0a")
		if err != nil {
			t.Fatal(err)
		}
		want := certs[0]
		created := got.CreatedAt
		if created.IsZero() {
			t.Error("CreatedAt not set")
		}
		got.CreatedAt = time.Time{}
		if !certEqual(got, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
		}

		// Upsert: revoke 0a, drop an address; CreatedAt is kept.
		rev := want
		rev.State = CertRevoked
		rev.RevokedAt = day(100).Add(1234 * time.Microsecond)
		rev.RevocationReason = "left group smime-users"
		rev.Addresses = []string{"alice@example.com"}
		rev.CreatedAt = day(-5)
		if err := s.PutCertificate(ctx, rev); err != nil {
			t.Fatal(err)
		}
		got, _ = s.CertificateBySerial(ctx, "0a")
		if !got.CreatedAt.Equal(created) {
			t.Errorf("CreatedAt changed on update: %v -> %v", created, got.CreatedAt)
		}
		got.CreatedAt = time.Time{}
		rev.CreatedAt = time.Time{}
		if !certEqual(got, rev) {
			t.Errorf("after update:\n got %+v\nwant %+v", got, rev)
		}
		if cs, _ := s.Certificates(ctx, "a.smith@example.com"); len(cs) != 0 {
			t.Errorf("removed address still finds %s", serials(cs))
		}

		if _, err := s.CertificateBySerial(ctx, "ff"); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing serial: %v", err)
		}
		for name, bad := range map[string]Certificate{
			"no serial": {Email: "x@example.com", DER: []byte("d"), State: CertActive},
			"no email":  {Serial: "1", DER: []byte("d"), State: CertActive},
			"no der":    {Serial: "1", Email: "x@example.com", State: CertActive},
			"bad state": {Serial: "1", Email: "x@example.com", DER: []byte("d"), State: "expired"},
		} {
			if err := s.PutCertificate(ctx, bad); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
}

func certEqual(a, b Certificate) bool {
	return a.Serial == b.Serial && a.Email == b.Email && strings.Join(a.Addresses, ",") == strings.Join(b.Addresses, ",") &&
		bytes.Equal(a.DER, b.DER) && a.KeyID == b.KeyID && a.NotBefore.Equal(b.NotBefore) && a.NotAfter.Equal(b.NotAfter) &&
		a.State == b.State && a.RevokedAt.Equal(b.RevokedAt) && a.RevocationReason == b.RevocationReason && a.CreatedAt.Equal(b.CreatedAt)
}

func TestRecipientCerts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		der1, der2 := []byte("recipient-der-1"), []byte("recipient-der-2")
		caps := []byte{0x30, 0x03, 0x06, 0x01, 0x01}
		if err := s.PutRecipientCert(ctx, RecipientCert{Email: "Partner@Example.org", DER: der1, Source: SourceHarvest, AddedAt: t0}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutRecipientCert(ctx, RecipientCert{Email: "partner@example.org", DER: der2, Source: SourceImport, Capabilities: caps, AddedAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		got, err := s.RecipientCerts(ctx, "PARTNER@example.org")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("got %d certs, want 2", len(got))
		}
		if !bytes.Equal(got[0].DER, der2) || !bytes.Equal(got[0].Capabilities, caps) || got[0].Source != SourceImport || !got[0].AddedAt.Equal(t0.Add(time.Hour)) {
			t.Errorf("newest: %+v", got[0])
		}
		if got[1].Email != "Partner@Example.org" || got[1].Capabilities != nil || got[1].Source != SourceHarvest {
			t.Errorf("oldest: %+v", got[1])
		}
		if sum := sha256.Sum256(der1); got[1].FingerprintSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("fingerprint %q, want lower-case hex SHA-256 of the DER", got[1].FingerprintSHA256)
		}

		// Harvesting der1 again with capabilities: added once, capabilities
		// updated, AddedAt kept. Harvesting der2 does not downgrade the import.
		if err := s.PutRecipientCert(ctx, RecipientCert{Email: "partner@example.org", DER: der1, Source: SourceHarvest, Capabilities: caps, AddedAt: t0.Add(48 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutRecipientCert(ctx, RecipientCert{Email: "partner@example.org", DER: der2, Source: SourceHarvest,
			FingerprintSHA256: strings.ToUpper(got[0].FingerprintSHA256)}); err != nil {
			t.Fatal(err)
		}
		got, _ = s.RecipientCerts(ctx, "partner@example.org")
		if len(got) != 2 {
			t.Fatalf("after re-harvest: %d certs, want 2", len(got))
		}
		for _, c := range got {
			switch {
			case bytes.Equal(c.DER, der1):
				if !bytes.Equal(c.Capabilities, caps) || !c.AddedAt.Equal(t0) {
					t.Errorf("re-harvested der1: %+v", c)
				}
			case bytes.Equal(c.DER, der2):
				if c.Source != SourceImport || !bytes.Equal(c.Capabilities, caps) {
					t.Errorf("der2 after harvest: source %s, caps %x", c.Source, c.Capabilities)
				}
			}
		}

		if err := s.PutRecipientCert(ctx, RecipientCert{Email: "x@example.org", DER: der1, Source: SourceImport, FingerprintSHA256: strings.Repeat("00", 32)}); err == nil {
			t.Error("mismatching fingerprint accepted")
		}
		if err := s.PutRecipientCert(ctx, RecipientCert{Email: "x@example.org", DER: der1, Source: "ldap"}); err == nil {
			t.Error("unknown source accepted")
		}
		if got, err := s.RecipientCerts(ctx, "nobody@example.org"); err != nil || len(got) != 0 {
			t.Errorf("unknown recipient: %d, %v", len(got), err)
		}
		if err := s.PutRecipientCert(ctx, RecipientCert{Email: "other@example.org", DER: der1, Source: SourceImport}); err != nil {
			t.Fatal(err)
		}
		if all, _ := s.RecipientCerts(ctx, ""); len(all) != 3 {
			t.Errorf("all recipient certs: %d, want 3", len(all))
		}

		sum := sha256.Sum256(der1)
		colons := strings.ToUpper(hex.EncodeToString(sum[:2])) + ":" + hex.EncodeToString(sum[2:])
		if err := s.DeleteRecipientCert(ctx, "Partner@example.org", colons); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.RecipientCerts(ctx, "partner@example.org"); len(got) != 1 || !bytes.Equal(got[0].DER, der2) {
			t.Errorf("after delete: %d certs", len(got))
		}
		if got, _ := s.RecipientCerts(ctx, "other@example.org"); len(got) != 1 {
			t.Error("delete removed another recipient's copy of the certificate")
		}
		if err := s.DeleteRecipientCert(ctx, "partner@example.org", hex.EncodeToString(sum[:])); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Error(err)
		}
	})
}

func TestAudit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
		events := []AuditEvent{
			{Time: t0, Actor: "rollout", Action: "cert.issue", Subject: "alice@example.com", Detail: "serial 0a"},
			{Time: t0.Add(time.Minute), Actor: "cli:root", Action: "cert.revoke", Subject: "0a", Detail: "left group"},
			{Time: t0.Add(time.Minute), Actor: "portal", Action: "pdfpw.set", Subject: "bob@example.org"},
			{Time: t0.Add(time.Hour), Actor: "rollout", Action: "cert.renew", Subject: "carol@example.com"},
		}
		for _, e := range events {
			if err := s.Audit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			since time.Time
			want  []AuditEvent
		}{
			{time.Time{}, events},
			{t0.Add(time.Minute), events[1:]},
			{t0.Add(time.Minute + time.Microsecond), events[3:]},
			{t0.Add(2 * time.Hour), nil},
		} {
			got, err := s.AuditEvents(ctx, tc.since)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("since %v: %d events, want %d", tc.since, len(got), len(tc.want))
			}
			for i := range got {
				w := tc.want[i]
				if !got[i].Time.Equal(w.Time) || got[i].Actor != w.Actor || got[i].Action != w.Action || got[i].Subject != w.Subject || got[i].Detail != w.Detail {
					t.Errorf("since %v [%d]: %+v, want %+v", tc.since, i, got[i], w)
				}
			}
		}
		if err := s.Audit(ctx, AuditEvent{Actor: "x"}); err == nil {
			t.Error("event without action accepted")
		}
		before := time.Now().Add(-time.Second)
		if err := s.Audit(ctx, AuditEvent{Action: "now"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.AuditEvents(ctx, before); len(got) != 1 || got[0].Action != "now" {
			t.Errorf("event with zero time not stamped now: %+v", got)
		}
	})
}

func TestQueue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		t0 := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
		entries := []QueueEntry{
			{ID: "m1", Node: "gw1", Sender: "a@example.com", Recipients: []string{"x@example.org", "y@example.org"}, State: "queued", NextAttempt: t0, Size: 1200},
			{ID: "m2", Node: "gw1", Sender: "b@example.com", Recipients: []string{"z@example.org"}, State: "deferred", Attempts: 2, NextAttempt: t0.Add(10 * time.Minute), LastError: "451 try later", Size: 900},
			{ID: "m3", Node: "gw2", Sender: "c@example.com", Recipients: []string{"w@example.org"}, State: "held", HoldReason: "no certificate and policy forbids PDF", Size: 300},
			{ID: "m4", Node: "gw2", Sender: "d@example.com", Recipients: []string{"v@example.org"}, State: "queued", NextAttempt: t0.Add(-time.Minute), Size: 10},
		}
		for _, e := range entries {
			if err := s.PutQueueEntry(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.QueueEntry(ctx, "m2")
		if err != nil {
			t.Fatal(err)
		}
		w := entries[1]
		if got.ID != w.ID || got.Node != w.Node || got.Sender != w.Sender || strings.Join(got.Recipients, ",") != "z@example.org" ||
			got.State != w.State || got.Attempts != 2 || !got.NextAttempt.Equal(w.NextAttempt) || got.LastError != w.LastError ||
			got.Size != 900 || got.CreatedAt.IsZero() || got.UpdatedAt.IsZero() {
			t.Errorf("round trip: %+v", got)
		}
		if m3, _ := s.QueueEntry(ctx, "m3"); !m3.NextAttempt.IsZero() || m3.HoldReason != entries[2].HoldReason {
			t.Errorf("m3: %+v", m3)
		}

		ids := func(es []QueueEntry) string {
			var out []string
			for _, e := range es {
				out = append(out, e.ID)
			}
			return strings.Join(out, ",")
		}
		for _, tc := range []struct {
			name string
			f    QueueFilter
			want string
		}{
			{"all", QueueFilter{}, "m4,m1,m2,m3"},
			{"node", QueueFilter{Node: "gw1"}, "m1,m2"},
			{"state", QueueFilter{State: "queued"}, "m4,m1"},
			{"due", QueueFilter{DueBy: t0}, "m4,m1"},
			{"due later", QueueFilter{DueBy: t0.Add(time.Hour)}, "m4,m1,m2"},
			{"due on node", QueueFilter{Node: "gw1", DueBy: t0.Add(time.Hour)}, "m1,m2"},
			{"limit", QueueFilter{Limit: 2}, "m4,m1"},
			{"none", QueueFilter{State: "sent"}, ""},
		} {
			got, err := s.QueueEntries(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if ids(got) != tc.want {
				t.Errorf("%s: %s, want %s", tc.name, ids(got), tc.want)
			}
		}

		err = s.UpdateQueueEntry(ctx, "m1", func(e *QueueEntry) error {
			e.Attempts++
			e.State = "deferred"
			e.LastError = "421 busy"
			e.NextAttempt = t0.Add(30 * time.Minute)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if m1, _ := s.QueueEntry(ctx, "m1"); m1.Attempts != 1 || m1.State != "deferred" || m1.LastError != "421 busy" {
			t.Errorf("after update: %+v", m1)
		}
		stop := errors.New("stop")
		if err := s.UpdateQueueEntry(ctx, "m1", func(e *QueueEntry) error { e.State = "lost"; return stop }); !errors.Is(err, stop) {
			t.Errorf("fn error: %v", err)
		}
		if m1, _ := s.QueueEntry(ctx, "m1"); m1.State != "deferred" {
			t.Errorf("aborted update was written: %s", m1.State)
		}
		if err := s.UpdateQueueEntry(ctx, "nope", func(*QueueEntry) error { return nil }); !errors.Is(err, ErrNotFound) {
			t.Errorf("update missing: %v", err)
		}
		if err := s.DeleteQueueEntry(ctx, "m1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.QueueEntry(ctx, "m1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete: %v", err)
		}
		if err := s.DeleteQueueEntry(ctx, "m1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if err := s.PutQueueEntry(ctx, QueueEntry{ID: "m9"}); err == nil {
			t.Error("entry without state accepted")
		}
	})
}

// TestConcurrentOpen: several nodes starting at once on an empty database
// migrate it exactly once, and none fails.
func TestConcurrentOpen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		opts := b.fresh(t)
		opts.Keyring = testKeyring(t)
		const nodes = 4
		stores := make([]*Store, nodes)
		errs := make([]error, nodes)
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() { stores[i], errs[i] = Open(ctx, opts) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("node %d: %v", i, err)
				continue
			}
			defer stores[i].Close()
		}
		if errs[0] != nil {
			return
		}
		var n, maxV int
		if err := stores[0].db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &maxV); err != nil {
			t.Fatal(err)
		}
		if n != len(migrations) || maxV != SchemaVersion() {
			t.Errorf("schema_migrations has %d rows up to %d, want %d up to %d", n, maxV, len(migrations), SchemaVersion())
		}
	})
}

// TestConcurrentWriters: several goroutines on one handle and a second
// handle on the same file (as a second process would) write at once; none
// fails with "database is locked" and no update is lost.
func TestConcurrentWriters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		kr := testKeyring(t)
		opts := b.fresh(t)
		s := openWith(t, opts, kr)
		handles := []*Store{s, openWith(t, opts, kr)}
		if err := s.PutQueueEntry(ctx, QueueEntry{ID: "shared", State: "queued"}); err != nil {
			t.Fatal(err)
		}
		const workers, perWorker = 6, 15
		var wg sync.WaitGroup
		errs := make(chan error, workers*perWorker*3)
		for w := range workers {
			h := handles[w%len(handles)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWorker {
					if err := h.Audit(ctx, AuditEvent{Action: "load", Subject: "w"}); err != nil {
						errs <- err
					}
					if err := h.SetPDFPassword(ctx, "u@example.com", []byte{byte(w), byte(i)}, "load"); err != nil {
						errs <- err
					}
					if err := h.UpdateQueueEntry(ctx, "shared", func(e *QueueEntry) error { e.Attempts++; return nil }); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		ev, err := s.AuditEvents(ctx, time.Time{})
		if err != nil || len(ev) != workers*perWorker {
			t.Errorf("audit events: %d, %v; want %d", len(ev), err, workers*perWorker)
		}
		e, err := s.QueueEntry(ctx, "shared")
		if err != nil || e.Attempts != workers*perWorker {
			t.Errorf("shared attempts = %d, %v; want %d (lost updates)", e.Attempts, err, workers*perWorker)
		}
	})
}

// TestPostgresErrorsHideDSNPassword: store.dsn may carry a password; a bad
// DSN or an unreachable server must not print it.
func TestPostgresErrorsHideDSNPassword(t *testing.T) {
	port := 1 // nothing listens on port 1
	for _, dsn := range []string{
		"postgres://sealgate:Sup3rSecretPw@127.0.0.1:" + strconv.Itoa(port) + "/sealgate?sslmode=disable&connect_timeout=2",
		"postgres://sealgate:Sup3rSecretPw@127.0.0.1/sealgate?sslmode=bogus",
		"host=127.0.0.1 port=1 user=sealgate password=Sup3rSecretPw connect_timeout=2 sslmode=disable",
		"host=127.0.0.1 user=sealgate password=Sup3rSecretPw sslmode=bogus",
		"postgres://sealgate:Sup3rSecretPw@127.0.0.1:notaport/sealgate",
	} {
		s, err := Open(ctx, Options{Driver: "postgres", DSN: dsn, Keyring: testKeyring(t)})
		if err == nil {
			s.Close()
			t.Fatalf("Open %q succeeded", dsn)
		}
		t.Logf("%v", err)
		if strings.Contains(err.Error(), "Sup3rSecretPw") {
			t.Errorf("error shows the DSN password: %v", err)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, testKeyring(t))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.SetPDFPassword(cctx, "a@example.com", []byte("pw"), "x"); !errors.Is(err, context.Canceled) {
			t.Errorf("SetPDFPassword: %v, want context.Canceled", err)
		}
		if err := s.PutKey(cctx, "k", []byte("key")); !errors.Is(err, context.Canceled) {
			t.Errorf("PutKey: %v, want context.Canceled", err)
		}
		if _, err := s.Certificates(cctx, ""); !errors.Is(err, context.Canceled) {
			t.Errorf("Certificates: %v, want context.Canceled", err)
		}
		opts := b.fresh(t)
		opts.Keyring = testKeyring(t)
		if _, err := Open(cctx, opts); !errors.Is(err, context.Canceled) {
			t.Errorf("Open: %v, want context.Canceled", err)
		}
	})
}
