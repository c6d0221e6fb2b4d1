package main

import (
	"archive/tar"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

func init() {
	register(newBackupCmd)
	register(newRestoreCmd)
}

func newBackupCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "write a consistent snapshot of the store and the embedded CA (secrets stay sealed; the master key is not in it)",
		Long: "backup writes FILE (a gzip'd tar, 0600) while serve may keep running: every table but\n" +
			"the queue from one read transaction, and the embedded CA's files under its CRL lock,\n" +
			"with the PKI lock held so no rollout changes either meanwhile. Keys and PDF passwords\n" +
			"stay sealed under the master key, which is NOT in the backup: keep pki.master_key_file\n" +
			"safe elsewhere; without it the backup cannot be restored. Messages in the queue are not\n" +
			"backed up (they live in the spool until delivered).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.backup(cmd.Context(), args[0]) },
	}
}

func newRestoreCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "restore a backup into an empty data_dir (and empty database) with the master key it was sealed with",
		Long: "restore checks FILE's format and checksums, then loads it into the configured store and\n" +
			"data_dir, which must be empty except for the master key file (pki.master_key_file, put\n" +
			"there beforehand; the key the backup was sealed with). A PostgreSQL store must be an\n" +
			"empty database. Nothing is written unless every check passes.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.restore(cmd.Context(), args[0]) },
	}
}

// backupManifest is the last entry of a backup: what it holds, with a
// SHA-256 of every other entry.
type backupManifest struct {
	Format        string            `json:"format"` // "sealgate-backup"
	Version       int               `json:"version"`
	Created       time.Time         `json:"created"`
	SchemaVersion int               `json:"schema_version"`
	StoreDriver   string            `json:"store_driver"`
	MasterKeyID   string            `json:"master_key_id"` // the key new values were sealed with
	Tables        map[string]int    `json:"tables"`        // rows per table
	Files         map[string]string `json:"files"`         // entry name → hex SHA-256
}

const (
	backupFormat   = "sealgate-backup"
	backupVersion  = 1
	manifestName   = "manifest.json"
	backupStoreDir = "store/"
	backupCADir    = "ca/"
)

func (a *app) backup(ctx context.Context, file string) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	st, kr, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	unlock, err := waitPKILock(ctx, cfg, st)
	if err != nil {
		return err
	}
	defer unlock()

	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp) // after the rename, a no-op
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	man := backupManifest{Format: backupFormat, Version: backupVersion, Created: time.Now().UTC(),
		SchemaVersion: store.SchemaVersion(), StoreDriver: cmp.Or(cfg.Store.Driver, "sqlite"),
		MasterKeyID: kr.CurrentKeyID().String(), Tables: map[string]int{}, Files: map[string]string{}}
	// Each table is staged in a temporary file: tar needs its size first.
	stage, err := os.MkdirTemp("", "sealgate-backup-")
	if err != nil {
		f.Close()
		return err
	}
	defer os.RemoveAll(stage)
	var staged []string
	tables, err := st.Dump(ctx, func(table string) (io.Writer, error) {
		p := filepath.Join(stage, table+".jsonl")
		staged = append(staged, p)
		return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	})
	if err != nil {
		f.Close()
		return err
	}
	for _, t := range tables {
		man.Tables[t.Name] = t.Rows
	}
	for _, p := range staged {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Close()
			return err
		}
		if err := addTarEntry(tw, man.Files, backupStoreDir+filepath.Base(p), b); err != nil {
			f.Close()
			return err
		}
	}
	caDir := cfg.DataPath("ca")
	if _, err := os.Stat(caDir); err == nil {
		files, err := embeddedca.SnapshotFiles(caDir)
		if err != nil {
			f.Close()
			return fmt.Errorf("backup: the embedded CA: %w", err)
		}
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			if err := addTarEntry(tw, man.Files, backupCADir+n, files[n]); err != nil {
				f.Close()
				return err
			}
		}
	}
	mb, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		f.Close()
		return err
	}
	if err := addTarEntry(tw, nil, manifestName, mb); err != nil {
		f.Close()
		return err
	}
	for _, c := range []io.Closer{tw, gz} {
		if err := c.Close(); err != nil {
			f.Close()
			return fmt.Errorf("backup: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return a.print(man, func(w io.Writer) error {
		rows := 0
		for _, n := range man.Tables {
			rows += n
		}
		_, err := fmt.Fprintf(w, "backup %s: %d tables, %d rows, %d CA files; sealed under master key %s (not included: keep it safe)\n",
			file, len(man.Tables), rows, countPrefix(man.Files, backupCADir), man.MasterKeyID)
		return err
	})
}

func countPrefix(m map[string]string, prefix string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

func addTarEntry(tw *tar.Writer, sums map[string]string, name string, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if sums != nil {
		h := sha256.Sum256(b)
		sums[name] = hex.EncodeToString(h[:])
	}
	return nil
}

// waitPKILock takes the PKI lock, waiting up to a minute for a rollout or
// serve's sync round to finish.
func waitPKILock(ctx context.Context, cfg *config.Config, st *store.Store) (func(), error) {
	deadline := time.Now().Add(time.Minute)
	for {
		unlock, err := lockPKI(ctx, cfg, st)
		if err == nil || time.Now().After(deadline) {
			return unlock, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// maxBackupEntry bounds one entry read from a backup file (outside input).
const maxBackupEntry = 64 << 30

func (a *app) restore(ctx context.Context, file string) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	keyFile := cfg.Path(cfg.PKI.MasterKeyFile)
	if _, err := os.Stat(keyFile); err != nil {
		return usageErrorf("the master key %s (pki.master_key_file) is missing: put the key the backup was sealed with there first", keyFile)
	}
	if err := dataDirEmpty(cfg.DataPath(""), keyFile); err != nil {
		return err
	}
	man, stage, err := readBackup(file)
	if stage != "" {
		defer os.RemoveAll(stage)
	}
	if err != nil {
		return err
	}
	if man.SchemaVersion != store.SchemaVersion() {
		return usageErrorf("%s holds schema version %d, this sealgate writes %d: restore it with the sealgate release that made it, then upgrade", file, man.SchemaVersion, store.SchemaVersion())
	}
	kr, err := secret.LoadOrCreateKeyring(keyFile)
	if err != nil {
		return fmt.Errorf("pki.master_key_file: %w", err)
	}
	if !slices.ContainsFunc(kr.KeyIDs(), func(id secret.KeyID) bool { return id.String() == man.MasterKeyID }) {
		return usageErrorf("%s was sealed with master key %s, but %s holds %s: put the right key file there", file, man.MasterKeyID, keyFile, kr.CurrentKeyID())
	}
	dsn, err := storeDSN(cfg)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, store.Options{Driver: cfg.Store.Driver, Path: cfg.DataPath("sealgate.db"), DSN: dsn, Keyring: kr})
	if err != nil {
		return fmt.Errorf("opening the store: %w", err)
	}
	defer st.Close()
	readers := map[string]io.Reader{}
	for name := range man.Files {
		if t, ok := strings.CutPrefix(name, backupStoreDir); ok {
			f, err := os.Open(filepath.Join(stage, name))
			if err != nil {
				return err
			}
			defer f.Close()
			readers[strings.TrimSuffix(t, ".jsonl")] = f
		}
	}
	if err := st.Restore(ctx, readers); err != nil {
		if errors.Is(err, store.ErrNotEmpty) {
			return usageErrorf("%v", err)
		}
		return err
	}
	ca := map[string][]byte{}
	for name := range man.Files {
		if n, ok := strings.CutPrefix(name, backupCADir); ok {
			b, err := os.ReadFile(filepath.Join(stage, name))
			if err != nil {
				return err
			}
			ca[n] = b
		}
	}
	if len(ca) > 0 {
		if err := embeddedca.RestoreFiles(cfg.DataPath("ca"), ca); err != nil {
			return fmt.Errorf("restoring the embedded CA: %w", err)
		}
		// Opening the CA unseals its keys: the proof that the key file is
		// the right one for the CA too.
		if _, err := embeddedca.Open(cfg.DataPath("ca"), kr, embeddedca.Options{}); err != nil {
			return fmt.Errorf("the restored CA does not open with %s: %w", keyFile, err)
		}
	}
	return a.print(man, func(w io.Writer) error {
		rows := 0
		for _, n := range man.Tables {
			rows += n
		}
		_, err := fmt.Fprintf(w, "restored %s (made %s): %d tables, %d rows, %d CA files\n", file, man.Created.Format(time.RFC3339), len(man.Tables), rows, len(ca))
		return err
	})
}

// dataDirEmpty refuses a data_dir holding anything but the master key.
func dataDirEmpty(dir, keyFile string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if abs, err := filepath.Abs(p); err == nil {
			if k, err := filepath.Abs(keyFile); err == nil && abs == k {
				continue
			}
		}
		return usageErrorf("data_dir %s is not empty (%s): restore only into a new data_dir holding nothing but the master key", dir, e.Name())
	}
	return nil
}

// readBackup extracts file into a temporary directory and checks it: a
// manifest of this format, every entry listed with its SHA-256, no entry
// missing or extra, no name outside store/ and ca/.
func readBackup(file string) (backupManifest, string, error) {
	var man backupManifest
	f, err := os.Open(file)
	if err != nil {
		return man, "", usageErrorf("%v", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return man, "", usageErrorf("%s is not a sealgate backup (not gzip): %v", file, err)
	}
	stage, err := os.MkdirTemp("", "sealgate-restore-")
	if err != nil {
		return man, "", err
	}
	sums := map[string]string{}
	var manifest []byte
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return man, stage, usageErrorf("%s is damaged: %v", file, err)
		}
		name := h.Name
		clean := path.Clean(name)
		if h.Typeflag != tar.TypeReg || clean != name || !(name == manifestName ||
			strings.HasPrefix(name, backupStoreDir) && !strings.Contains(name[len(backupStoreDir):], "/") ||
			strings.HasPrefix(name, backupCADir) && !strings.Contains(name[len(backupCADir):], "/")) {
			return man, stage, usageErrorf("%s holds an unexpected entry %q", file, name)
		}
		if _, dup := sums[name]; dup || name == manifestName && manifest != nil {
			return man, stage, usageErrorf("%s holds %q twice", file, name)
		}
		if name == manifestName {
			if manifest, err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
				return man, stage, usageErrorf("%s is damaged: %v", file, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Join(stage, path.Dir(name)), 0o700); err != nil {
			return man, stage, err
		}
		out, err := os.OpenFile(filepath.Join(stage, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return man, stage, err
		}
		hash := sha256.New()
		_, err = io.Copy(io.MultiWriter(out, hash), io.LimitReader(tr, maxBackupEntry))
		out.Close()
		if err != nil {
			return man, stage, usageErrorf("%s is damaged: %v", file, err)
		}
		sums[name] = hex.EncodeToString(hash.Sum(nil))
	}
	if manifest == nil {
		return man, stage, usageErrorf("%s has no manifest: not a complete sealgate backup", file)
	}
	dec := json.NewDecoder(strings.NewReader(string(manifest)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&man); err != nil || man.Format != backupFormat {
		return man, stage, usageErrorf("%s is not a sealgate backup (manifest: %v)", file, err)
	}
	if man.Version != backupVersion {
		return man, stage, usageErrorf("%s is backup format %d; this sealgate reads format %d", file, man.Version, backupVersion)
	}
	for name, want := range man.Files {
		if got, ok := sums[name]; !ok || got != want {
			return man, stage, usageErrorf("%s is damaged: %s does not match its checksum (or is missing)", file, name)
		}
	}
	for name := range sums {
		if _, ok := man.Files[name]; !ok {
			return man, stage, usageErrorf("%s holds %s, which its manifest does not list", file, name)
		}
	}
	return man, stage, nil
}
