package secret

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func randKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr, err := NewKeyring(randKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"empty", nil, nil},
		{"password", []byte("correct horse battery staple"), []byte("pdfpw:alice@example.com")},
		{"binary", bytes.Repeat([]byte{0, 1, 2, 0xff}, 1000), []byte("key:abc")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealed, err := kr.Seal(tc.plaintext, tc.aad)
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.plaintext) > 4 && bytes.Contains(sealed, tc.plaintext) {
				t.Fatal("sealed value contains the plaintext")
			}
			if len(sealed) != headerSize+len(tc.plaintext)+tagSize {
				t.Errorf("sealed length %d, want %d", len(sealed), headerSize+len(tc.plaintext)+tagSize)
			}
			id, err := SealedKeyID(sealed)
			if err != nil || id != kr.CurrentKeyID() {
				t.Errorf("SealedKeyID = %v, %v; want %v", id, err, kr.CurrentKeyID())
			}
			got, err := kr.Open(sealed, tc.aad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.plaintext) {
				t.Errorf("Open = %q, want %q", got, tc.plaintext)
			}
		})
	}
}

func TestSealUsesFreshNonce(t *testing.T) {
	kr, _ := NewKeyring(randKey(t))
	a, _ := kr.Seal([]byte("same"), nil)
	b, _ := kr.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are identical: nonce reused")
	}
}

// TestOpenFailsClosed: every way a value can be wrong ends in ErrOpen and no
// plaintext.
func TestOpenFailsClosed(t *testing.T) {
	key := randKey(t)
	kr, _ := NewKeyring(key)
	other, _ := NewKeyring(randKey(t))
	aad := []byte("pdfpw:alice@example.com")
	sealed, err := kr.Seal([]byte("s3cret-password"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 0x01
		return c
	}
	cases := []struct {
		name   string
		kr     *Keyring
		sealed []byte
		aad    []byte
	}{
		{"wrong key", other, sealed, aad},
		{"other row's aad", kr, sealed, []byte("pdfpw:mallory@example.com")},
		{"no aad", kr, sealed, nil},
		{"flipped version", kr, flip(0), aad},
		{"flipped key id", kr, flip(1), aad},
		{"flipped nonce", kr, flip(headerSize - 1), aad},
		{"flipped ciphertext", kr, flip(headerSize), aad},
		{"flipped tag", kr, flip(len(sealed) - 1), aad},
		{"truncated", kr, sealed[:len(sealed)-1], aad},
		{"too short", kr, sealed[:headerSize], aad},
		{"empty", kr, nil, aad},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := tc.kr.Open(tc.sealed, tc.aad)
			if !errors.Is(err, ErrOpen) {
				t.Fatalf("Open error = %v, want ErrOpen", err)
			}
			if pt != nil {
				t.Fatalf("Open returned plaintext %q on failure", pt)
			}
			if strings.Contains(err.Error(), hex.EncodeToString(key)) || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks secret material: %v", err)
			}
		})
	}
}

func TestNewKeyringRejectsBadKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewKeyring(make([]byte, n)); err == nil {
			t.Errorf("NewKeyring accepted a %d-byte key", n)
		}
	}
}

func TestLoadOrCreateKeyringCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "master.key")
	kr, err := LoadOrCreateKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	dst, _ := os.Stat(dir)
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode %04o, want 0700", dst.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if len(raw) != 2*KeySize+1 || raw[2*KeySize] != '\n' {
		t.Errorf("key file is %d bytes, want 64 hex + newline", len(raw))
	}
	if _, err := hex.DecodeString(string(raw[:2*KeySize])); err != nil {
		t.Errorf("key file is not hex: %v", err)
	}
	sealed, _ := kr.Seal([]byte("x"), nil)

	// Re-loading reads the same key, it does not make a new one.
	kr2, err := LoadOrCreateKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if kr2.CurrentKeyID() != kr.CurrentKeyID() {
		t.Fatal("reload produced a different key")
	}
	if _, err := kr2.Open(sealed, nil); err != nil {
		t.Fatalf("reloaded keyring cannot open: %v", err)
	}
}

func TestLoadKeyFileFormats(t *testing.T) {
	key := randKey(t)
	cases := []struct {
		name    string
		content []byte
		wantErr string
	}{
		{"hex with newline", []byte(hex.EncodeToString(key) + "\n"), ""},
		{"hex upper, spaces", []byte("  " + strings.ToUpper(hex.EncodeToString(key)) + " \r\n"), ""},
		{"raw 32 bytes", key, "hex"},
		{"short hex", []byte(hex.EncodeToString(key[:16])), "want 64 hexadecimal"},
		{"not hex", []byte(strings.Repeat("zz", KeySize)), "not hexadecimal"},
		{"empty", nil, "holds 0 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			kr, err := LoadOrCreateKeyring(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), hex.EncodeToString(key[:8])) {
					t.Fatalf("error leaks key bytes: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if kr.CurrentKeyID() != keyIDOf(key) {
				t.Fatal("loaded key differs from the file's")
			}
		})
	}
}

func TestLoadRefusesLoosePermissions(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602, 0o620} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			key := randKey(t)
			if err := os.WriteFile(path, []byte(hex.EncodeToString(key)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateKeyring(path)
			if err == nil {
				t.Fatalf("master key with mode %04o accepted", mode)
			}
			for _, want := range []string{path, "chmod 600"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if strings.Contains(err.Error(), hex.EncodeToString(key)) {
				t.Fatal("error leaks the key")
			}
		})
	}
}

func TestLoadRefusesLooseOldKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if _, err := LoadOrCreateKeyring(path); err != nil {
		t.Fatal(err)
	}
	old := path + ".old.20250101T000000Z"
	if err := os.WriteFile(old, []byte(hex.EncodeToString(randKey(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(old, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeyring(path); err == nil || !strings.Contains(err.Error(), old) {
		t.Fatalf("loose old key file not refused: %v", err)
	}
}

func TestLoadRefusesDirectoryAndEmptyPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeyring(dir); err == nil {
		t.Error("a directory was accepted as a master key file")
	}
	if _, err := LoadOrCreateKeyring(""); err == nil || !strings.Contains(err.Error(), "pki.master_key_file") {
		t.Errorf("empty path: %v", err)
	}
}

func TestRotateKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	kr1, err := LoadOrCreateKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("key:user1")
	before, _ := kr1.Seal([]byte("sealed before rotation"), aad)

	oldPath, err := RotateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(oldPath), "master.key.old.") {
		t.Errorf("old key kept as %s", oldPath)
	}
	for _, p := range []string{path, oldPath} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %04o after rotation, want 0600", p, st.Mode().Perm())
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "*.new.*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	kr2, err := LoadOrCreateKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if kr2.CurrentKeyID() == kr1.CurrentKeyID() {
		t.Fatal("rotation kept the same current key")
	}
	if len(kr2.KeyIDs()) != 2 {
		t.Fatalf("keyring after rotation holds %d keys, want 2", len(kr2.KeyIDs()))
	}
	// Old values still open; new values use the new key.
	if got, err := kr2.Open(before, aad); err != nil || string(got) != "sealed before rotation" {
		t.Fatalf("old value after rotation: %q, %v", got, err)
	}
	if !kr2.NeedsReseal(before) {
		t.Error("value under the old key not reported as needing reseal")
	}
	after, _ := kr2.Seal([]byte("after"), aad)
	if id, _ := SealedKeyID(after); id != kr2.CurrentKeyID() {
		t.Error("new seal does not use the new key")
	}
	if kr2.NeedsReseal(after) {
		t.Error("value under the current key reported as needing reseal")
	}
	// A keyring loaded before the rotation (a running gateway) looks at
	// the file again when a value names a key it lacks, and from then on
	// seals with the new key; one built from bytes cannot.
	oldID := kr1.CurrentKeyID()
	if got, err := kr1.Open(after, aad); err != nil || string(got) != "after" {
		t.Errorf("the keyring loaded before the rotation did not pick up the new key: %q, %v", got, err)
	}
	if kr1.CurrentKeyID() != kr2.CurrentKeyID() {
		t.Error("after reloading, the old keyring still seals with the old key")
	}
	bare, _ := os.ReadFile(oldPath)
	raw, _ := parseKey(bare)
	fixed, err := NewKeyring(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixed.Open(after, aad); !errors.Is(err, ErrOpen) {
		t.Errorf("a keyring of the old key alone opened a value of the new key: %v", err)
	}

	// Removing the old file (before resealing) makes old values fail closed,
	// with an error that says which key is missing.
	if err := os.Remove(oldPath); err != nil {
		t.Fatal(err)
	}
	kr3, err := LoadOrCreateKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kr3.Open(before, aad)
	if !errors.Is(err, ErrOpen) || !strings.Contains(err.Error(), oldID.String()) {
		t.Fatalf("open without old key: %v", err)
	}

	// Rotating twice keeps both older keys.
	if _, err := RotateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	kr4, err := LoadOrCreateKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr4.Open(after, aad); err != nil {
		t.Fatalf("second rotation lost the first rotation's key: %v", err)
	}
}

func TestRotateMissingKeyFails(t *testing.T) {
	if _, err := RotateKeyFile(filepath.Join(t.TempDir(), "absent.key")); err == nil {
		t.Fatal("rotating a missing key file succeeded")
	}
}

func FuzzOpen(f *testing.F) {
	kr, err := NewKeyring(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		f.Fatal(err)
	}
	good, _ := kr.Seal([]byte("hello"), []byte("aad"))
	f.Add(good, []byte("aad"))
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 2, 3}, []byte("aad"))
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		pt, err := kr.Open(sealed, aad)
		if err != nil {
			if !errors.Is(err, ErrOpen) || pt != nil {
				t.Fatalf("failure not fail-closed: %v, %q", err, pt)
			}
			return
		}
		// Whatever opens must reseal and reopen to the same bytes.
		again, err := kr.Seal(pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		pt2, err := kr.Open(again, aad)
		if err != nil || !bytes.Equal(pt, pt2) {
			t.Fatalf("reseal round trip: %v", err)
		}
	})
}

func BenchmarkSeal1KB(b *testing.B) {
	kr, _ := NewKeyring(randKey(b))
	pt := make([]byte, 1024)
	aad := []byte("pdfpw:alice@example.com")
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Seal(pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen1KB(b *testing.B) {
	kr, _ := NewKeyring(randKey(b))
	aad := []byte("pdfpw:alice@example.com")
	sealed, _ := kr.Seal(make([]byte, 1024), aad)
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Open(sealed, aad); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParseKey: the key file is read from disk, where anything can be.
// Parsing never panics, yields KeySize bytes or an error, and the error
// never echoes the content.
func FuzzParseKey(f *testing.F) {
	f.Add([]byte(strings.Repeat("ab", KeySize) + "\n"))
	f.Add([]byte(strings.Repeat("x", 2*KeySize)))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, KeySize))
	f.Fuzz(func(t *testing.T, raw []byte) {
		key, err := parseKey(raw)
		if err != nil {
			if key != nil {
				t.Fatal("key returned with an error")
			}
			if trimmed := bytes.TrimSpace(raw); len(trimmed) >= 8 && strings.Contains(err.Error(), string(trimmed)) {
				t.Fatalf("error echoes the file content: %v", err)
			}
			return
		}
		if len(key) != KeySize {
			t.Fatalf("key of %d bytes", len(key))
		}
		if !strings.EqualFold(hex.EncodeToString(key), string(bytes.TrimSpace(raw))) {
			t.Fatal("decoded key does not match the file")
		}
	})
}

// TestLoadOrCreateKeyringRace: processes starting at once on a fresh
// data_dir must all end up with the one key on disk, never with keys of
// their own.
func TestLoadOrCreateKeyringRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "master.key")
	const n = 8
	ids := make([]KeyID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			kr, err := LoadOrCreateKeyring(path)
			errs[i] = err
			if err == nil {
				ids[i] = kr.CurrentKeyID()
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("loader %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("loader %d got key %s, loader 0 got %s", i, ids[i], ids[0])
		}
	}
	if left, _ := filepath.Glob(path + ".new.*"); len(left) != 0 {
		t.Errorf("temporary key files left behind: %v", left)
	}
}
