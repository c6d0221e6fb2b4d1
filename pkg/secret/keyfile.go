package secret

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// oldSuffix marks a retired master key kept for opening older values.
const oldSuffix = ".old."

// LoadOrCreateKeyring loads the master key at path, creating it (0600, its
// directory 0700) with fresh random bytes when absent, plus every
// "<path>.old.*" file as a decrypt-only key. It refuses any key file that
// group or others may read or write: a master key that leaked through
// permissions protects nothing.
func LoadOrCreateKeyring(path string) (*Keyring, error) {
	if path == "" {
		return nil, errors.New("secret: no master key file configured (set pki.master_key_file)")
	}
	current, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKeyFile(path); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// Read back what is on disk: if another process won the race to
		// create the file, its key is the one to use.
		current, err = readKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	_, older, err := readKeyFiles(path)
	if err != nil {
		return nil, err
	}
	kr, err := NewKeyring(current, older...)
	if err != nil {
		return nil, err
	}
	kr.path = path
	return kr, nil
}

// readKeyFiles reads the master key at path and every "<path>.old.*".
func readKeyFiles(path string) (current []byte, older [][]byte, err error) {
	if current, err = readKeyFile(path); err != nil {
		return nil, nil, err
	}
	olds, err := oldKeyFiles(path)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range olds {
		k, err := readKeyFile(p)
		if err != nil {
			return nil, nil, err
		}
		older = append(older, k)
	}
	return current, older, nil
}

// OldKeyFiles lists the retired keys kept beside path ("<path>.old.*").
func OldKeyFiles(path string) ([]string, error) { return oldKeyFiles(path) }

// RotateKeyFile makes a fresh current master key at path and keeps the
// previous one as "<path>.old.<UTC timestamp>", so values sealed under it
// still open. At every instant both keys are reachable on disk: the old key
// is hard-linked to its new name before the new key replaces path. It
// returns the name the old key was kept under.
func RotateKeyFile(path string) (oldPath string, err error) {
	if _, err := readKeyFile(path); err != nil {
		return "", fmt.Errorf("secret: rotate: %w", err)
	}
	oldPath = path + oldSuffix + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Link(path, oldPath); err != nil {
		return "", fmt.Errorf("secret: rotate: keeping the old key as %s: %w", oldPath, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".new.*")
	if err != nil {
		return "", fmt.Errorf("secret: rotate: %w", err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmpName)
		}
	}()
	if err := writeNewKey(tmp); err != nil {
		return "", fmt.Errorf("secret: rotate: writing %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return "", fmt.Errorf("secret: rotate: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("secret: rotate: %w", err)
	}
	return oldPath, nil
}

// oldKeyFiles lists "<path>.old.*" in name order (oldest first, as the
// suffix is a timestamp).
func oldKeyFiles(path string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(path) + oldSuffix + "*")
	if err != nil {
		return nil, fmt.Errorf("secret: listing old master keys beside %s: %w", path, err)
	}
	sort.Strings(matches)
	return matches, nil
}

func globEscape(p string) string {
	var b bytes.Buffer
	for _, r := range p {
		switch r {
		case '*', '?', '[', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// readKeyFile reads one master key, refusing loose permissions. Errors name
// the file and what to do, never the content.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret: master key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secret: master key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("secret: master key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secret: master key file %s has mode %04o, readable or writable by group or others; refusing to use it (run `chmod 600 %s`, and consider the key exposed)", path, perm, path)
	}
	raw, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("secret: reading master key file %s: %w", path, err)
	}
	key, err := parseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("secret: master key file %s %w; delete it only if nothing was sealed with it yet", path, err)
	}
	return key, nil
}

// parseKey decodes a key file's content: 64 hex characters, surrounding
// white space ignored. Its errors describe the shape, never the content.
func parseKey(raw []byte) ([]byte, error) {
	text := bytes.TrimSpace(raw)
	if len(text) != 2*KeySize {
		return nil, fmt.Errorf("holds %d bytes; want %d hexadecimal characters", len(raw), 2*KeySize)
	}
	key := make([]byte, KeySize)
	if _, err := hex.Decode(key, text); err != nil {
		return nil, errors.New("is not hexadecimal")
	}
	return key, nil
}

// createKeyFile writes a new random key to a temporary file and links it
// into place: the key file appears complete or not at all (a process
// starting at the same moment never reads a half-written key), and an
// existing key is never overwritten (link fails with ErrExist).
func createKeyFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secret: creating directory for master key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".new.*")
	if err != nil {
		return fmt.Errorf("secret: creating master key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeNewKey(tmp); err != nil {
		return fmt.Errorf("secret: writing master key file %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("secret: creating master key file: %w", err)
	}
	return syncDir(dir)
}

// writeNewKey writes fresh random key bytes as hex, fsyncs and closes f.
func writeNewKey(f *os.File) error {
	raw := make([]byte, KeySize)
	if _, err := io.ReadFull(rand.Reader, raw); err != nil {
		f.Close()
		return err
	}
	text := make([]byte, 2*KeySize+1)
	hex.Encode(text, raw)
	text[2*KeySize] = '\n'
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
