package embeddedca

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
		if !e.Type().IsRegular() || e.Name() == crlLockFile {
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
