package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// queuedMsg is a message a test puts into a node's queue as serve would:
// sealed in a spool file (SQLite) or in its row (PostgreSQL, Stored).
type queuedMsg struct {
	id, node, body string
	stored         bool
}

// queueLikeServe writes m for the node configured in cfgFile: the entry
// deferred for a day and leased by its (old) node.
func queueLikeServe(t *testing.T, cfgFile string, node, lane, body string, stored bool) queuedMsg {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	st, kr, err := openStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sp, err := gateway.OpenSpool(cfg.DataPath(spoolDirOf(node, lane)), kr)
	if err != nil {
		t.Fatal(err)
	}
	env := &gateway.Envelope{ID: gateway.NewID(), From: "alice@example.org",
		Recipients: []gateway.Recipient{{Addr: "bob@partner.test"}}, Received: time.Now().UTC()}
	later := time.Now().Add(24 * time.Hour)
	e := store.QueueEntry{ID: env.ID, Node: node, Lane: lane, Sender: env.From, Recipients: env.Addrs(), State: gateway.StateDeferred,
		Attempts: 2, NextAttempt: later, LastError: "451 next hop down", LeaseNode: node, LeaseUntil: later}
	if stored {
		sealed, _, err := sp.Seal(env, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutQueueMessage(ctx, e, sealed); err != nil {
			t.Fatal(err)
		}
	} else {
		if _, err := sp.Write(env, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if err := st.PutQueueEntry(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	return queuedMsg{id: env.ID, node: node, body: body, stored: stored}
}

// restoredBody reads message id from a restored node as its queue would:
// from the row, or from the spool file where that entry's spool lies.
func restoredBody(t *testing.T, cfgFile string, e store.QueueEntry) string {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	st, kr, err := openStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sp, err := gateway.OpenSpool(cfg.DataPath(spoolDirOf(e.Node, e.Lane)), kr)
	if err != nil {
		t.Fatal(err)
	}
	var m *gateway.SpooledMessage
	if e.Stored {
		sealed, err := st.QueueMessage(ctx, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		m, err = sp.OpenSealed(e.ID, sealed)
		if err != nil {
			t.Fatal(err)
		}
	} else if m, err = sp.Open(e.ID); err != nil {
		t.Fatalf("restored message %s: %v", e.ID, err)
	}
	defer m.Close()
	b, err := io.ReadAll(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func queueOf(t *testing.T, cfgFile string) map[string]store.QueueEntry {
	t.Helper()
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := openStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	list, err := st.QueueEntries(context.Background(), store.QueueFilter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.QueueEntry{}
	for _, e := range list {
		out[e.ID] = e
	}
	return out
}

// backupEntries lists a backup's entries and their bytes.
func backupEntries(t *testing.T, file string) map[string][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
}

// forgeBackup rewrites a backup as someone who can also rewrite its
// manifest would: edit changes the entries and the manifest, and every
// checksum is computed afresh.
func forgeBackup(t *testing.T, file string, edit func(entries map[string][]byte, man *backupManifest)) string {
	t.Helper()
	entries := backupEntries(t, file)
	var man backupManifest
	if err := json.Unmarshal(entries[manifestName], &man); err != nil {
		t.Fatal(err)
	}
	delete(entries, manifestName)
	edit(entries, &man)
	man.Files = map[string]string{}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	put := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	for name, b := range entries {
		sum := sha256.Sum256(b)
		man.Files[name] = hex.EncodeToString(sum[:])
		put(name, b)
	}
	mb, _ := json.Marshal(man)
	put(manifestName, mb)
	tw.Close()
	gz.Close()
	p := filepath.Join(t.TempDir(), "forged.backup")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// restoreNode is a fresh node (extra: its [store]) holding srcDir's key.
func restoreNode(t *testing.T, srcDir, extra string) (dir, cfg string) {
	t.Helper()
	dir, cfg = backupNode(t, extra)
	key, err := os.ReadFile(filepath.Join(srcDir, "data", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "data", "master.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// TestBackupCarriesTheQueue: a node's queue (spool files on SQLite,
// sealed rows on PostgreSQL, the inbound listener's spool too) goes into
// the backup and comes back, on either store, unleased and due now, each
// message opening with the master key to the bytes that were queued. The
// snapshot's race with delivery: an entry whose spool file a delivery
// removes after the snapshot is left out, not an error; a spool file
// without an entry in the snapshot stays out.
func TestBackupCarriesTheQueue(t *testing.T) {
	pgConf := func(t *testing.T) string { t.Skip("no PostgreSQL"); return "" }
	if pg, err := testpeer.StartPostgresServer(); err == nil {
		defer pg.Stop()
		pgConf = func(t *testing.T) string {
			return fmt.Sprintf("[store]\ndriver = \"postgres\"\ndsn = %q\n", pg.NewDatabase(t))
		}
	} else if testpeer.InCI() {
		t.Fatalf("peer PostgreSQL: %v", err)
	}
	stores := []struct {
		name string
		conf func(t *testing.T) string
	}{{"sqlite", func(*testing.T) string { return "" }}, {"postgres", pgConf}}
	for _, from := range stores {
		t.Run("from "+from.name, func(t *testing.T) {
			srcDir, src := backupNode(t, from.conf(t))
			mustSG(t, src, "pki", "init")
			pg := from.name == "postgres"
			msgs := []queuedMsg{
				queueLikeServe(t, src, "old-node-1a2b", store.LaneOutbound, "Subject: one\r\n\r\nfirst body\r\n", pg),
				queueLikeServe(t, src, "old-node-1a2b", store.LaneInbound, "Subject: two\r\n\r\ninbound body\r\n", false),
			}
			delivered := queueLikeServe(t, src, "old-node-1a2b", store.LaneOutbound, "Subject: three\r\n\r\ndelivered during the backup\r\n", false)
			// Deleted by an admin on another node: its owner discards it.
			deleted := queueLikeServe(t, src, "old-node-1a2b", store.LaneOutbound, "Subject: four\r\n\r\ndeleted body\r\n", pg)
			cfg, _ := config.Load(src)
			if st, _, err := openStore(context.Background(), cfg); err != nil {
				t.Fatal(err)
			} else {
				err := st.UpdateQueueEntry(context.Background(), deleted.id, func(e *store.QueueEntry) error { e.State = gateway.StateDeleted; return nil })
				st.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			// A spool file without an entry: a message being accepted.
			kr, _ := secret.LoadOrCreateKeyring(cfg.Path(cfg.PKI.MasterKeyFile))
			sp, _ := gateway.OpenSpool(cfg.DataPath("spool"), kr)
			stray := &gateway.Envelope{ID: gateway.NewID(), From: "alice@example.org", Recipients: []gateway.Recipient{{Addr: "bob@partner.test"}}}
			if _, err := sp.Write(stray, strings.NewReader("Subject: stray\r\n\r\nno entry\r\n")); err != nil {
				t.Fatal(err)
			}
			backupSpoolHook = func(id string) {
				if id == delivered.id {
					os.Remove(filepath.Join(srcDir, "data", "spool", id+".msg"))
				}
			}
			defer func() { backupSpoolHook = nil }()
			file := filepath.Join(t.TempDir(), "node.backup")
			out := mustSG(t, src, "backup", file)
			if !strings.Contains(out, "2 queued messages") || !strings.Contains(out, "1 delivered meanwhile and left out") {
				t.Fatalf("backup said: %s", out)
			}
			entries := backupEntries(t, file)
			for name, b := range entries {
				for _, plain := range []string{"first body", "inbound body", "no entry", "deleted body"} {
					if bytes.Contains(b, []byte(plain)) {
						t.Fatalf("%s holds the message %q unsealed", name, plain)
					}
				}
				if strings.Contains(name, delivered.id) || strings.Contains(name, stray.ID) || strings.Contains(name, deleted.id) || bytes.Contains(b, []byte(deleted.id)) {
					t.Fatalf("the backup holds %s", name)
				}
			}
			if _, ok := entries["spool-inbound/"+msgs[1].id+".msg"]; !ok {
				t.Fatal("the inbound spool file is not in the backup")
			}
			if _, ok := entries["spool/"+msgs[0].id+".msg"]; ok == pg {
				t.Fatalf("spool file of %s in the backup: %v (message kept in the row: %v)", msgs[0].id, ok, pg)
			}

			for _, into := range stores {
				t.Run("into "+into.name, func(t *testing.T) {
					_, dst := restoreNode(t, srcDir, into.conf(t))
					if out := mustSG(t, dst, "restore", file); !strings.Contains(out, "2 queued messages") {
						t.Fatalf("restore said: %s", out)
					}
					got := queueOf(t, dst)
					if len(got) != len(msgs) {
						t.Fatalf("restored queue %+v; want %d entries", got, len(msgs))
					}
					for _, m := range msgs {
						e, ok := got[m.id]
						if !ok {
							t.Fatalf("%s is not in the restored queue", m.id)
						}
						if e.LeaseNode != "" || !e.LeaseUntil.IsZero() || e.NextAttempt.IsZero() || e.NextAttempt.After(time.Now()) {
							t.Errorf("%s restored leased or not due: %+v", m.id, e)
						}
						if e.Node != m.node || e.Attempts != 2 || e.LastError != "451 next hop down" {
							t.Errorf("%s restored as %+v", m.id, e)
						}
						// Only PostgreSQL keeps messages in rows.
						if e.Stored != (m.stored && into.name == "postgres") {
							t.Errorf("%s: stored in the row %v", m.id, e.Stored)
						}
						if b := restoredBody(t, dst, e); b != m.body {
							t.Errorf("%s restored body %q, want %q", m.id, b, m.body)
						}
					}
				})
			}
		})
	}
}

// TestRestoreOlderFormat: a format 1 backup (made before the queue was
// backed up; generated here from a format 2 one, as that release wrote
// it) restores with an empty queue; a format 1 file carrying a queue was
// forged and is refused.
func TestRestoreOlderFormat(t *testing.T) {
	srcDir, src := backupNode(t, "")
	mustSG(t, src, "pki", "init")
	queueLikeServe(t, src, "old-node", store.LaneOutbound, "Subject: q\r\n\r\nqueued\r\n", false)
	file := filepath.Join(t.TempDir(), "node.backup")
	mustSG(t, src, "backup", file)
	v1 := func(keepQueue bool) string {
		return forgeBackup(t, file, func(entries map[string][]byte, man *backupManifest) {
			man.Version = 1
			if keepQueue {
				return
			}
			delete(man.Tables, backupQueueTable)
			for name := range entries {
				if name == backupStoreDir+backupQueueTable+".jsonl" || spoolEntryID(name) != "" {
					delete(entries, name)
				}
			}
		})
	}
	_, dst := restoreNode(t, srcDir, "")
	mustSG(t, dst, "restore", v1(false))
	if q := queueOf(t, dst); len(q) != 0 {
		t.Fatalf("queue after a format 1 restore: %+v", q)
	}
	if a, b := mustSG(t, src, "pki", "ca-cert"), mustSG(t, dst, "pki", "ca-cert"); a != b {
		t.Error("the CA chain differs after a format 1 restore")
	}
	dstDir2, dst2 := restoreNode(t, srcDir, "")
	if code, _, stderr := sg(t, dst2, "restore", v1(true)); code != 2 || !strings.Contains(stderr, "format 1, which has no queue") {
		t.Fatalf("format 1 with a queue: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dstDir2, "data", "spool")); err == nil {
		t.Fatal("a spool was written for a refused backup")
	}
}

// TestRestoreRefusesForgedQueue plays someone handing the admin a backup
// with a doctored queue. A changed queue section without a matching
// manifest fails the checksum; with the manifest rewritten too, a spool
// file no entry names, an entry without its message, a file name that
// leaves its directory, and a message sealed under another master key (a
// forged message, or a key file that is not the one) are each refused
// before anything is written.
func TestRestoreRefusesForgedQueue(t *testing.T) {
	srcDir, src := backupNode(t, "")
	mustSG(t, src, "pki", "init")
	m := queueLikeServe(t, src, "old-node", store.LaneOutbound, "Subject: q\r\n\r\nqueued\r\n", false)
	file := filepath.Join(t.TempDir(), "node.backup")
	mustSG(t, src, "backup", file)
	spoolName := "spool/" + m.id + ".msg"

	// A message sealed for m's id under a key that is not the node's.
	otherKey := filepath.Join(t.TempDir(), "other.key")
	okr, err := secret.LoadOrCreateKeyring(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	osp, err := gateway.OpenSpool(t.TempDir(), okr)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := osp.Seal(&gateway.Envelope{ID: m.id, From: "mallory@evil.test",
		Recipients: []gateway.Recipient{{Addr: "bob@partner.test"}}}, strings.NewReader("Subject: forged\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	otherID := gateway.NewID()

	keepManifest := func(edit func(entries map[string][]byte)) func(t *testing.T) string {
		return func(t *testing.T) string {
			// Rewrite the entries, keep the manifest: the checksums catch it.
			entries := backupEntries(t, file)
			edit(entries)
			var buf bytes.Buffer
			gz := gzip.NewWriter(&buf)
			tw := tar.NewWriter(gz)
			for name, b := range entries {
				tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg})
				tw.Write(b)
			}
			tw.Close()
			gz.Close()
			p := filepath.Join(t.TempDir(), "tampered.backup")
			os.WriteFile(p, buf.Bytes(), 0o600)
			return p
		}
	}
	for _, tc := range []struct {
		name string
		file func(t *testing.T) string
		want string
	}{
		{"a queue row changed", keepManifest(func(e map[string][]byte) {
			e["store/queue.jsonl"] = bytes.Replace(e["store/queue.jsonl"], []byte("bob@partner.test"), []byte("eve@evil.test00"), 1)
		}), "does not match its checksum"},
		{"a spool file changed", keepManifest(func(e map[string][]byte) {
			b := bytes.Clone(e[spoolName])
			b[len(b)-1] ^= 1
			e[spoolName] = b
		}), "does not match its checksum"},
		{"a spool file no entry names", func(t *testing.T) string {
			return forgeBackup(t, file, func(e map[string][]byte, _ *backupManifest) { e["spool/"+otherID+".msg"] = e[spoolName] })
		}, "which no queue entry names"},
		{"an entry without its message", func(t *testing.T) string {
			return forgeBackup(t, file, func(e map[string][]byte, _ *backupManifest) { delete(e, spoolName) })
		}, "has no message in the backup"},
		{"a spool name leaving its directory", func(t *testing.T) string {
			return forgeBackup(t, file, func(e map[string][]byte, _ *backupManifest) { e["spool/../../x.msg"] = e[spoolName] })
		}, "unexpected entry"},
		{"a message sealed under another key", func(t *testing.T) string {
			return forgeBackup(t, file, func(e map[string][]byte, _ *backupManifest) { e[spoolName] = foreign })
		}, "does not open with the master key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dstDir, dst := restoreNode(t, srcDir, "")
			code, _, stderr := sg(t, dst, "restore", tc.file(t))
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, %s; want 2 and %q", code, stderr, tc.want)
			}
			for _, d := range []string{"spool", "ca"} {
				if _, err := os.Stat(filepath.Join(dstDir, "data", d)); err == nil {
					t.Fatalf("data/%s was written for a refused backup", d)
				}
			}
		})
	}
}

// FuzzBackupQueue feeds checkBackupQueue, which parses a backup's queue
// section (outside input), arbitrary rows beside one genuine spool file.
// It must never panic, and whatever it accepts is consistent: each spool
// entry it returns is a plain spool/<hex id>.msg name named by a row, and
// its message opens with the key.
func FuzzBackupQueue(f *testing.F) {
	keyFile := filepath.Join(f.TempDir(), "master.key")
	kr, err := secret.LoadOrCreateKeyring(keyFile)
	if err != nil {
		f.Fatal(err)
	}
	sp, err := gateway.OpenSpool(f.TempDir(), kr)
	if err != nil {
		f.Fatal(err)
	}
	const id = "18c2f0a1b2c3d4e5f60718293a4b5c6d"
	sealed, _, err := sp.Seal(&gateway.Envelope{ID: id, From: "alice@example.org",
		Recipients: []gateway.Recipient{{Addr: "bob@partner.test"}}}, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		f.Fatal(err)
	}
	b64 := func(b []byte) string { j, _ := json.Marshal(b); return string(j) }
	f.Add([]byte(`{"id":"` + id + `","node":"n","message":null}` + "\n"))
	f.Add([]byte(`{"id":"` + id + `","node":"n/inbound","message":null}` + "\n"))
	f.Add([]byte(`{"id":"abc","node":"n","message":{"b64":` + b64(sealed) + `}}` + "\n"))
	f.Add([]byte(`{"id":"` + id + `","node":"n","message":{"b64":` + b64(sealed) + `}}` + "\n"))
	f.Add([]byte(`{"id":"../x","node":"n"}` + "\n" + `{"id":1}`))
	f.Fuzz(func(t *testing.T, rows []byte) {
		for _, toSpool := range []bool{false, true} {
			stage := t.TempDir()
			os.MkdirAll(filepath.Join(stage, "store"), 0o700)
			os.MkdirAll(filepath.Join(stage, "spool"), 0o700)
			os.WriteFile(filepath.Join(stage, "store", "queue.jsonl"), rows, 0o600)
			os.WriteFile(filepath.Join(stage, "spool", id+".msg"), sealed, 0o600)
			man := backupManifest{Files: map[string]string{"store/queue.jsonl": "-", "spool/" + id + ".msg": "-"}}
			got, err := checkBackupQueue("fuzz.backup", stage, man, kr, toSpool)
			if err != nil {
				continue
			}
			for _, name := range got {
				gid := spoolEntryID(name)
				if gid == "" {
					t.Fatalf("accepted spool entry %q", name)
				}
				b, err := os.ReadFile(filepath.Join(stage, filepath.FromSlash(name)))
				if err != nil {
					t.Fatalf("accepted %s, which is not in the stage: %v", name, err)
				}
				m, err := sp.OpenSealed(gid, b)
				if err != nil {
					t.Fatalf("accepted %s, which does not open: %v", name, err)
				}
				m.Close()
			}
		}
	})
}

// FuzzSpoolEntryID: a name it takes for a spool entry is exactly
// <spool dir>/<id>.msg, clean, one level deep.
func FuzzSpoolEntryID(f *testing.F) {
	for _, s := range []string{"spool/18c2f0a1.msg", "spool-inbound/ab.msg", "spool/../x.msg", "spool/A.msg", "ca/x.msg", "spool/x/y.msg", "spool/.msg"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id := spoolEntryID(name)
		if id == "" {
			return
		}
		dir, _, _ := strings.Cut(name, "/")
		if name != dir+"/"+id+".msg" || filepath.Clean(name) != name || strings.Count(name, "/") != 1 || !gateway.ValidID(id) {
			t.Fatalf("spoolEntryID(%q) = %q", name, id)
		}
	})
}

// BenchmarkBackupQueue measures backup and restore of a SQLite node whose
// queue holds 200 spooled messages of 10 KB (SetBytes: the message bytes).
func BenchmarkBackupQueue(b *testing.B) {
	const n, size = 200, 10 << 10
	dir := b.TempDir()
	src := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(src, []byte(strings.Replace(backupTestConfig, `"./data"`, fmt.Sprintf("%q", filepath.Join(dir, "data")), 1)), 0o600); err != nil {
		b.Fatal(err)
	}
	run := func(cfg string, args ...string) {
		var out, errb bytes.Buffer
		if code := run(append([]string{"--config", cfg}, args...), strings.NewReader(""), &out, &errb); code != 0 {
			b.Fatalf("sealgate %v: exit %d\n%s%s", args, code, out.String(), errb.String())
		}
	}
	run(src, "pki", "init")
	ctx := context.Background()
	cfg, err := config.Load(src)
	if err != nil {
		b.Fatal(err)
	}
	st, kr, err := openStore(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	sp, err := gateway.OpenSpool(cfg.DataPath("spool"), kr)
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("0123456789abcdef", size/16)
	for range n {
		env := &gateway.Envelope{ID: gateway.NewID(), From: "alice@example.org", Recipients: []gateway.Recipient{{Addr: "bob@partner.test"}}}
		if _, err := sp.Write(env, strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
		if err := st.PutQueueEntry(ctx, store.QueueEntry{ID: env.ID, Node: "n", State: gateway.StateQueued, NextAttempt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	file := filepath.Join(dir, "node.backup")
	b.Run("backup", func(b *testing.B) {
		b.SetBytes(n * size)
		for b.Loop() {
			run(src, "-o", "json", "backup", file)
		}
	})
	key, _ := os.ReadFile(filepath.Join(dir, "data", "master.key"))
	b.Run("restore", func(b *testing.B) {
		b.SetBytes(n * size)
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			d := filepath.Join(b.TempDir(), fmt.Sprint(i))
			os.MkdirAll(filepath.Join(d, "data"), 0o700)
			os.WriteFile(filepath.Join(d, "data", "master.key"), key, 0o600)
			dst := filepath.Join(d, "sealgate.toml")
			os.WriteFile(dst, []byte(strings.Replace(backupTestConfig, `"./data"`, fmt.Sprintf("%q", filepath.Join(d, "data")), 1)), 0o600)
			b.StartTimer()
			run(dst, "-o", "json", "restore", file)
		}
	})
}
