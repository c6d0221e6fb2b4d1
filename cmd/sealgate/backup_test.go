package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
)

const backupTestConfig = `data_dir = "./data"
[relay]
mode = "dir"
dir = "./outbox"
[pki]
key_type = "p256"
[users]
source = "static"
groups = ["s"]
[[users.static]]
email = "alice@example.org"
groups = ["s"]
[[users.static]]
email = "bob@example.org"
groups = ["s"]
`

func backupNode(t *testing.T, extra string) (dir, cfg string) {
	t.Helper()
	dir = t.TempDir()
	cfg = filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfg, []byte(backupTestConfig+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// TestBackupRestore: a node with issued certificates, a revocation, a
// preset PDF password and an API token is backed up and restored into a
// fresh node (SQLite, and PostgreSQL when the peer is there) with its
// master key: the certificates, the CA chain, the CRL's revocation, the
// PDF password and the token are the same, and a PKCS#12 exported on the
// new node opens in openssl with the user's key.
func TestBackupRestore(t *testing.T) {
	testpeer.Require(t, "openssl")
	srcDir, src := backupNode(t, "")
	mustSG(t, src, "pki", "init")
	mustSG(t, src, "pki", "rollout")
	mustSG(t, src, "cert", "revoke", "bob@example.org")
	pw := filepath.Join(srcDir, "pw.txt")
	os.WriteFile(pw, []byte("Partner-Passwort-2026\n"), 0o600)
	mustSG(t, src, "pdf", "password", "set", "partner@example.net", "--password-file", pw)
	mustSG(t, src, "api", "token", "create", "siem", "--scope", "events:read")
	file := filepath.Join(t.TempDir(), "node.backup")
	mustSG(t, src, "backup", file)
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file %v, %v; want 0600", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(srcDir, "data", "master.key")); bytes.Contains(gunzipAll(t, file), b) {
		t.Fatal("the master key is in the backup")
	}
	if bytes.Contains(gunzipAll(t, file), []byte("Partner-Passwort-2026")) {
		t.Fatal("a PDF password is readable in the backup")
	}

	targets := map[string]string{"sqlite": ""}
	if pg, err := testpeer.StartPostgresServer(); err == nil {
		defer pg.Stop()
		targets["postgres"] = fmt.Sprintf("[store]\ndriver = \"postgres\"\ndsn = %q\n", pg.NewDatabase(t))
	} else if testpeer.InCI() {
		t.Fatalf("peer PostgreSQL: %v", err)
	}
	for name, extra := range targets {
		t.Run("into "+name, func(t *testing.T) {
			dstDir, dst := backupNode(t, extra)
			if code, _, stderr := sg(t, dst, "restore", file); code != 2 || !strings.Contains(stderr, "master key") {
				t.Fatalf("restore without the key: exit %d, %s", code, stderr)
			}
			os.MkdirAll(filepath.Join(dstDir, "data"), 0o700)
			key, _ := os.ReadFile(filepath.Join(srcDir, "data", "master.key"))
			os.WriteFile(filepath.Join(dstDir, "data", "master.key"), key, 0o600)
			mustSG(t, dst, "restore", file)

			if a, b := mustSG(t, src, "-o", "json", "pki", "status"), mustSG(t, dst, "-o", "json", "pki", "status"); a != b {
				t.Errorf("pki status differs:\n%s\n%s", a, b)
			}
			if a, b := mustSG(t, src, "pki", "ca-cert"), mustSG(t, dst, "pki", "ca-cert"); a != b {
				t.Error("the CA chain differs")
			}
			cfg, err := config.Load(dst)
			if err != nil {
				t.Fatal(err)
			}
			st, _, err := openStore(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, source, err := st.PDFPassword(context.Background(), "partner@example.net")
			if err != nil || string(got) != "Partner-Passwort-2026" || source != "preset" {
				t.Errorf("PDF password after restore: %q %q %v", got, source, err)
			}
			if list, err := st.APITokens(context.Background()); err != nil || len(list) != 1 || list[0].Name != "siem" {
				t.Errorf("api tokens after restore: %+v %v", list, err)
			}
			st.Close()
			p12 := filepath.Join(dstDir, "alice.p12")
			ppw := filepath.Join(dstDir, "p12pw.txt")
			os.WriteFile(ppw, []byte("Export-Passwort-77\n"), 0o600)
			mustSG(t, dst, "cert", "export", "alice@example.org", "--p12", p12, "--password-file", ppw)
			out := testpeer.MustRun(t, nil, "openssl", "pkcs12", "-in", p12, "-passin", "pass:Export-Passwort-77", "-nodes")
			if !bytes.Contains(out, []byte("PRIVATE KEY")) || !bytes.Contains(out, []byte("alice@example.org")) {
				t.Fatalf("openssl pkcs12 of the restored key:\n%s", out)
			}
			// The revocation survived: bob's certificate is revoked.
			if s := mustSG(t, dst, "pki", "status"); !strings.Contains(s, "bob@example.org") || !strings.Contains(s, "revoked") {
				t.Errorf("bob after restore:\n%s", s)
			}
			// Into the same place again: refused, nothing changed.
			if code, _, stderr := sg(t, dst, "restore", file); code != 2 || !strings.Contains(stderr, "not empty") {
				t.Fatalf("second restore: exit %d, %s", code, stderr)
			}
		})
	}
}

// TestRestoreRefusesForgedBackups plays someone handing the admin a
// crafted file: a changed table, an entry outside store/ and ca/, a
// wrong master key. Each is refused before anything is written.
func TestRestoreRefusesForgedBackups(t *testing.T) {
	srcDir, src := backupNode(t, "")
	mustSG(t, src, "pki", "init")
	mustSG(t, src, "pki", "rollout")
	file := filepath.Join(t.TempDir(), "node.backup")
	mustSG(t, src, "backup", file)
	key, _ := os.ReadFile(filepath.Join(srcDir, "data", "master.key"))

	rewrite := func(t *testing.T, edit func(name string, b []byte) (string, []byte)) string {
		t.Helper()
		in, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		gz, _ := gzip.NewReader(in)
		tr := tar.NewReader(gz)
		var buf bytes.Buffer
		ogz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(ogz)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			b, _ := io.ReadAll(tr)
			name, nb := edit(h.Name, b)
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(nb)), Typeflag: tar.TypeReg})
			tw.Write(nb)
		}
		tw.Close()
		ogz.Close()
		p := filepath.Join(t.TempDir(), "forged.backup")
		os.WriteFile(p, buf.Bytes(), 0o600)
		return p
	}
	for _, tc := range []struct {
		name string
		file func(t *testing.T) string
		key  []byte
		want string
	}{
		{"a certificate row changed", func(t *testing.T) string {
			return rewrite(t, func(n string, b []byte) (string, []byte) {
				if n == "store/certificates.jsonl" {
					b = bytes.Replace(b, []byte("alice"), []byte("mallo"), 1)
				}
				return n, b
			})
		}, key, "does not match its checksum"},
		{"an entry outside store/ and ca/", func(t *testing.T) string {
			return rewrite(t, func(n string, b []byte) (string, []byte) {
				if n == "ca/root.crt" {
					n = "ca/../../etc/cron.d/x"
				}
				return n, b
			})
		}, key, "unexpected entry"},
		{"not a backup", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "x")
			os.WriteFile(p, []byte("hello"), 0o600)
			return p
		}, key, "not a sealgate backup"},
		{"another master key", func(t *testing.T) string { return file }, nil, "was sealed with master key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dstDir, dst := backupNode(t, "")
			os.MkdirAll(filepath.Join(dstDir, "data"), 0o700)
			if tc.key != nil {
				os.WriteFile(filepath.Join(dstDir, "data", "master.key"), tc.key, 0o600)
			} else {
				// Another node's key: a fresh one.
				other, _ := backupNode(t, "")
				mustSG(t, filepath.Join(other, "sealgate.toml"), "pki", "init")
				k, _ := os.ReadFile(filepath.Join(other, "data", "master.key"))
				os.WriteFile(filepath.Join(dstDir, "data", "master.key"), k, 0o600)
			}
			code, _, stderr := sg(t, dst, "restore", tc.file(t))
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, %s; want 2 and %q", code, stderr, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dstDir, "data", "ca")); err == nil {
				t.Fatal("a CA was written for a refused backup")
			}
			if _, err := os.Stat("/etc/cron.d/x"); err == nil {
				t.Fatal("the forged entry escaped")
			}
		})
	}
}

func gunzipAll(t *testing.T, file string) []byte {
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
	b, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
