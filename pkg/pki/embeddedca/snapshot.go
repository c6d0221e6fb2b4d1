package embeddedca

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SnapshotFiles reads every file of the CA directory (certificates, sealed
// keys, the revocation list and the CRL) under the CRL lock, so no
// revocation is half written into the copy. Keys stay sealed. The lock
// file itself is not part of the CA.
func SnapshotFiles(dir string) (map[string][]byte, error) {
	c := &CA{dir: dir}
	unlock, err := c.lockCRL()
	if err != nil {
		return nil, err
	}
	defer unlock()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the CA directory: %w", err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == crlLockFile || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading the CA directory: %w", err)
		}
		out[e.Name()] = b
	}
	for _, must := range []string{rootCertFile, rootKeyFile, issuingCertFile, issuingKeyFile} {
		if _, ok := out[must]; !ok {
			return nil, fmt.Errorf("the CA directory %s lacks %s", dir, must)
		}
	}
	return out, nil
}

// RestoreFiles writes a snapshot into dir, which must not hold a CA yet,
// each file 0600 and fsynced. Only the names a CA directory holds are
// accepted: a backup file is outside input.
func RestoreFiles(dir string, files map[string][]byte) error {
	known := []string{rootCertFile, rootKeyFile, issuingCertFile, issuingKeyFile, revokedFile, crlFile}
	for name := range files {
		if !slices.Contains(known, name) {
			return fmt.Errorf("the backup's CA has an unexpected file %q", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, rootCertFile)); err == nil {
		return fmt.Errorf("%s already holds a CA", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, b := range files {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Resealer is a Sealer that can tell values sealed under an older master
// key; *secret.Keyring satisfies it.
type Resealer interface {
	Sealer
	NeedsReseal(sealed []byte) bool
}

// ResealKeys seals the CA's two private keys again under the keyring's
// current key when they are under an older one, each replaced by a rename
// (a crash leaves the old or the new file, both open while the old key
// file is kept). It returns how many it resealed.
func ResealKeys(dir string, kr Resealer) (int, error) {
	n := 0
	for _, k := range []struct{ file, aad string }{{rootKeyFile, aadRootKey}, {issuingKeyFile, aadIssuingKey}} {
		p := filepath.Join(dir, k.file)
		sealed, err := os.ReadFile(p)
		if err != nil {
			return n, fmt.Errorf("reseal %s: %w", k.file, err)
		}
		if !kr.NeedsReseal(sealed) {
			continue
		}
		plain, err := kr.Open(sealed, []byte(k.aad))
		if err != nil {
			return n, fmt.Errorf("reseal %s: %w", k.file, err)
		}
		fresh, err := kr.Seal(plain, []byte(k.aad))
		clear(plain)
		if err != nil {
			return n, fmt.Errorf("reseal %s: %w", k.file, err)
		}
		if err := replaceFile(p, fresh); err != nil {
			return n, fmt.Errorf("reseal %s: %w", k.file, err)
		}
		n++
	}
	return n, nil
}

// StaleKeys counts the CA keys still sealed under an older master key.
func StaleKeys(dir string, kr Resealer) (int, error) {
	n := 0
	for _, f := range []string{rootKeyFile, issuingKeyFile} {
		sealed, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return n, err
		}
		if kr.NeedsReseal(sealed) {
			n++
		}
	}
	return n, nil
}

func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
