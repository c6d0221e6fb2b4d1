package main

import (
	"archive/tar"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
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
	"github.com/sealgate/sealgate/pkg/gateway"
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
		Long: "backup writes FILE (a gzip'd tar, 0600) while serve may keep running: every table\n" +
			"from one read transaction, the queue with its messages included (in the database on\n" +
			"PostgreSQL; the spool files of the entries in that snapshot on SQLite), and the embedded\n" +
			"CA's files under its CRL lock, with the PKI lock held so no rollout changes either\n" +
			"meanwhile. Keys, PDF passwords and queued messages stay sealed under the master key,\n" +
			"which is NOT in the backup: keep pki.master_key_file safe elsewhere; without it the\n" +
			"backup cannot be restored. A message delivered while the backup runs is left out.",
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
			"empty database. Nothing is written unless every check passes, including that every\n" +
			"queued message opens with that key. Restored queue entries are unleased and due at\n" +
			"once: serve delivers them. Format 1 backups (before the queue was backed up) restore\n" +
			"with an empty queue.",
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
	backupFormat = "sealgate-backup"
	// backupVersion 2 added the queue: store/queue.jsonl and the spool
	// files of its entries. Version 1 files still restore (no queue).
	backupVersion    = 2
	backupVersionMin = 1
	manifestName     = "manifest.json"
	backupStoreDir   = "store/"
	backupCADir      = "ca/"
	backupQueueTable = "queue"
)

// backupSpools are the spool directories a backup carries, by their name
// under data_dir, which is also their entry prefix in the backup.
var backupSpools = []string{"spool", "spool-inbound"}

// spoolDirOf is the spool a queue entry's file lies in: entries of the
// inbound lane lie in the inbound listener's spool (serve_inbound.go).
// Rows written before queue lanes (migration 10) said so by their node,
// "<node>/inbound".
func spoolDirOf(node, lane string) string {
	if lane == store.LaneInbound || strings.HasSuffix(node, "/inbound") {
		return "spool-inbound"
	}
	return "spool"
}

// backupSpoolHook, if set, runs before backup opens the spool file of a
// queue entry in its snapshot (tests deliver the message there).
var backupSpoolHook func(id string)

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
	var (
		staged  []string
		files   []*os.File
		spooled []string // entry names of the spool files, staged under the same name
		leftOut int
	)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, d := range backupSpools {
		if err := os.Mkdir(filepath.Join(stage, d), 0o700); err != nil {
			f.Close()
			return err
		}
	}
	tables, err := st.Dump(ctx, func(table string) (io.Writer, error) {
		p := filepath.Join(stage, table+".jsonl")
		staged = append(staged, p)
		w, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			files = append(files, w)
		}
		return w, err
	}, store.DumpOptions{KeepQueue: func(r store.QueueDumpRow) (bool, error) {
		keep, name, err := backupSpoolFile(cfg, stage, r)
		if err != nil {
			return false, err
		}
		if !keep && r.State != gateway.StateDeleted {
			leftOut++
		} else if name != "" {
			spooled = append(spooled, name)
		}
		return keep, nil
	}})
	if err != nil {
		f.Close()
		return err
	}
	for _, w := range files {
		if err := w.Close(); err != nil {
			f.Close()
			return fmt.Errorf("backup: %w", err)
		}
	}
	files = nil
	slices.Sort(spooled)
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
	for _, name := range spooled {
		b, err := os.ReadFile(filepath.Join(stage, filepath.FromSlash(name)))
		if err != nil {
			f.Close()
			return err
		}
		if err := addTarEntry(tw, man.Files, name, b); err != nil {
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
	spoolFiles := 0
	for _, d := range backupSpools {
		spoolFiles += countPrefix(man.Files, d+"/")
	}
	report := struct {
		backupManifest
		// QueueLeftOut counts the queue entries of the snapshot whose
		// message was gone when the backup read it (delivered meanwhile).
		QueueLeftOut int `json:"queue_left_out"`
	}{man, leftOut}
	return a.print(report, func(w io.Writer) error {
		rows := 0
		for _, n := range man.Tables {
			rows += n
		}
		_, err := fmt.Fprintf(w, "backup %s: %d tables, %d rows, %d CA files, %d queued messages (%d in spool files, %d delivered meanwhile and left out); sealed under master key %s (not included: keep it safe)\n",
			file, len(man.Tables), rows, countPrefix(man.Files, backupCADir), man.Tables[backupQueueTable], spoolFiles, leftOut, man.MasterKeyID)
		return err
	})
}

// backupSpoolFile decides whether queue row r goes into the backup and
// stages its spool file when the message is not in the row. Only entries
// of the snapshot are asked about, so a spool file without an entry (a
// message being accepted, or an interrupted write) never goes in. A file
// gone by the time it is read was delivered after the snapshot: the entry
// is left out, and the backup goes on. The file is copied as it is, still
// sealed under the master key.
func backupSpoolFile(cfg *config.Config, stage string, r store.QueueDumpRow) (keep bool, name string, err error) {
	if r.State == gateway.StateDeleted {
		return false, "", nil // deleted by an admin; its owner discards it
	}
	if r.Stored {
		return true, "", nil // the sealed message is in the row
	}
	if !gateway.ValidID(r.ID) {
		return false, "", fmt.Errorf("backup: queue entry %q: not a spool id", r.ID)
	}
	if backupSpoolHook != nil {
		backupSpoolHook(r.ID)
	}
	dir := spoolDirOf(r.Node, r.Lane)
	src, err := os.Open(filepath.Join(cfg.DataPath(dir), r.ID+".msg"))
	if errors.Is(err, os.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("backup: queued message %s: %w", r.ID, err)
	}
	defer src.Close()
	// Open, the file stays readable whole even if a delivery removes it now.
	name = dir + "/" + r.ID + ".msg"
	dst, err := os.OpenFile(filepath.Join(stage, filepath.FromSlash(name)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, "", fmt.Errorf("backup: staging queued message %s: %w", r.ID, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return false, "", fmt.Errorf("backup: copying queued message %s: %w", r.ID, err)
	}
	if err := dst.Close(); err != nil {
		return false, "", fmt.Errorf("backup: staging queued message %s: %w", r.ID, err)
	}
	return true, name, nil
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
	spooled, err := checkBackupQueue(file, stage, man, kr, cfg.Store.Driver != "postgres")
	if err != nil {
		return err
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
	// The spool files go first: a queue entry committed without its file
	// would be dropped by serve's recovery as "delivered before a crash".
	if err := restoreSpoolFiles(cfg, stage, spooled); err != nil {
		removeRestoredSpools(cfg)
		return err
	}
	if err := st.Restore(ctx, readers); err != nil {
		removeRestoredSpools(cfg)
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
		_, err := fmt.Fprintf(w, "restored %s (made %s): %d tables, %d rows, %d CA files, %d queued messages (%d in spool files; unleased and due now)\n",
			file, man.Created.Format(time.RFC3339), len(man.Tables), rows, len(ca), man.Tables[backupQueueTable], len(spooled))
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

// spoolEntryID is the message id of a backup entry spool/<id>.msg or
// spool-inbound/<id>.msg, or "" for any other name.
func spoolEntryID(name string) string {
	dir, base, ok := strings.Cut(name, "/")
	if !ok || !slices.Contains(backupSpools, dir) {
		return ""
	}
	id, ok := strings.CutSuffix(base, ".msg")
	if !ok || !gateway.ValidID(id) {
		return ""
	}
	return id
}

// readBackup extracts file into a temporary directory and checks it: a
// manifest of a format this build reads, every entry listed with its
// SHA-256, no entry missing or extra, no name outside store/, ca/ and
// the spool directories (spool/<id>.msg only).
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
			strings.HasPrefix(name, backupCADir) && !strings.Contains(name[len(backupCADir):], "/") ||
			spoolEntryID(name) != "") {
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
	if man.Version < backupVersionMin || man.Version > backupVersion {
		return man, stage, usageErrorf("%s is backup format %d; this sealgate reads formats %d to %d", file, man.Version, backupVersionMin, backupVersion)
	}
	if man.Version < 2 {
		// Format 1 never carried the queue: such an entry was put there.
		for name := range sums {
			if name == backupStoreDir+backupQueueTable+".jsonl" || spoolEntryID(name) != "" {
				return man, stage, usageErrorf("%s is backup format 1, which has no queue, but holds %s", file, name)
			}
		}
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

// checkBackupQueue checks the queue a backup carries before anything is
// written: every entry's message is there (in its row, or as the spool
// file its row points to), every spool file belongs to an entry, and every
// message opens with the master key (its message key unwraps and its
// envelope decrypts for its id). A message that does not open refuses the
// whole restore: delivering it would fail, and dropping it silently would
// lose accepted mail. It returns the spool entries to restore.
//
// Into a store that does not keep messages (toSpool: SQLite), a message
// kept in its row (a PostgreSQL backup) becomes a spool file: the bytes
// are the same format. The queue table to load is then rewritten without
// those messages, in place in the stage.
func checkBackupQueue(file, stage string, man backupManifest, kr gateway.Keyring, toSpool bool) ([]string, error) {
	name := backupStoreDir + backupQueueTable + ".jsonl"
	var spool []string
	for n := range man.Files {
		if spoolEntryID(n) != "" {
			spool = append(spool, n)
		}
	}
	slices.Sort(spool)
	if _, ok := man.Files[name]; !ok {
		if len(spool) > 0 {
			return nil, usageErrorf("%s holds %s but no queue: a spool file without an entry", file, spool[0])
		}
		return nil, nil
	}
	f, err := os.Open(filepath.Join(stage, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		rewritten *os.File
		enc       *json.Encoder
	)
	if toSpool {
		if rewritten, err = os.CreateTemp(stage, "queue-*.jsonl"); err != nil {
			return nil, err
		}
		defer rewritten.Close()
		enc = json.NewEncoder(rewritten)
	}
	verify, err := gateway.OpenSpool(filepath.Join(stage, "verify"), kr)
	if err != nil {
		return nil, err
	}
	opens := func(id string, sealed []byte) error {
		m, err := verify.OpenSealed(id, sealed)
		if err != nil {
			return usageErrorf("%s: queued message %s does not open with the master key (%v): restore refused, nothing written. "+
				"Put the master key it was sealed with in place (with its .old.N keys if a key rotation was not finished)", file, id, err)
		}
		return m.Close()
	}
	claimed := map[string]bool{}
	dec := json.NewDecoder(f)
	dec.UseNumber()
	for line := 1; ; line++ {
		var row map[string]any
		if err := dec.Decode(&row); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, usageErrorf("%s: %s row %d: %v", file, name, line, err)
		}
		id, _ := row["id"].(string)
		node, _ := row["node"].(string)
		lane, _ := row["lane"].(string)
		if !gateway.ValidID(id) {
			return nil, usageErrorf("%s: %s row %d: queue id %q", file, name, line, row["id"])
		}
		if msg, ok := row["message"].(map[string]any); ok {
			b64, _ := msg["b64"].(string)
			sealed, err := base64.StdEncoding.DecodeString(b64)
			if err != nil || len(msg) != 1 {
				return nil, usageErrorf("%s: queued message %s: not {\"b64\": ...}", file, id)
			}
			if err := opens(id, sealed); err != nil {
				return nil, err
			}
			if toSpool {
				entry := spoolDirOf(node, lane) + "/" + id + ".msg"
				if _, dup := man.Files[entry]; dup || claimed[entry] {
					return nil, usageErrorf("%s: queued message %s is both in its row and in %s", file, id, entry)
				}
				if err := os.MkdirAll(filepath.Join(stage, spoolDirOf(node, lane)), 0o700); err != nil {
					return nil, err
				}
				if err := os.WriteFile(filepath.Join(stage, filepath.FromSlash(entry)), sealed, 0o600); err != nil {
					return nil, err
				}
				claimed[entry] = true
				spool = append(spool, entry)
				delete(row, "message")
				if err := enc.Encode(row); err != nil {
					return nil, err
				}
			} else if enc != nil {
				if err := enc.Encode(row); err != nil {
					return nil, err
				}
			}
			continue
		} else if row["message"] != nil {
			return nil, usageErrorf("%s: queued message %s: not {\"b64\": ...}", file, id)
		}
		entry := spoolDirOf(node, lane) + "/" + id + ".msg"
		if _, ok := man.Files[entry]; !ok || claimed[entry] {
			return nil, usageErrorf("%s: queue entry %s has no message in the backup (%s)", file, id, entry)
		}
		claimed[entry] = true
		sealed, err := os.ReadFile(filepath.Join(stage, filepath.FromSlash(entry)))
		if err != nil {
			return nil, err
		}
		if err := opens(id, sealed); err != nil {
			return nil, err
		}
		if enc != nil {
			if err := enc.Encode(row); err != nil {
				return nil, err
			}
		}
	}
	if rewritten != nil {
		// The checked, converted rows replace the extracted table.
		if err := rewritten.Close(); err != nil {
			return nil, err
		}
		if err := os.Rename(rewritten.Name(), filepath.Join(stage, name)); err != nil {
			return nil, err
		}
	}
	slices.Sort(spool)
	for _, n := range spool {
		if !claimed[n] {
			return nil, usageErrorf("%s holds %s, which no queue entry names", file, n)
		}
	}
	return spool, nil
}

// restoreSpoolFiles puts the checked spool files into data_dir's spool
// directories (0700), each file and directory fsynced.
func restoreSpoolFiles(cfg *config.Config, stage string, entries []string) error {
	dirs := map[string]bool{}
	for _, n := range entries {
		dir, base, _ := strings.Cut(n, "/")
		dst := cfg.DataPath(dir)
		if !dirs[dir] {
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return fmt.Errorf("restoring the spool: %w", err)
			}
			dirs[dir] = true
		}
		b, err := os.ReadFile(filepath.Join(stage, filepath.FromSlash(n)))
		if err != nil {
			return err
		}
		out, err := os.OpenFile(filepath.Join(dst, base), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("restoring the spool: %w", err)
		}
		if _, err := out.Write(b); err != nil {
			out.Close()
			return fmt.Errorf("restoring the spool: %w", err)
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return fmt.Errorf("restoring the spool: %w", err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("restoring the spool: %w", err)
		}
	}
	for dir := range dirs {
		d, err := os.Open(cfg.DataPath(dir))
		if err != nil {
			return fmt.Errorf("restoring the spool: %w", err)
		}
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("restoring the spool: %w", err)
		}
	}
	return nil
}

// removeRestoredSpools undoes restoreSpoolFiles after a failed restore,
// so the data_dir can take the next attempt (it was empty before).
func removeRestoredSpools(cfg *config.Config) {
	for _, d := range backupSpools {
		os.RemoveAll(cfg.DataPath(d))
	}
}
