package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/secret"
)

// TestKeyRotate: rotate makes a new master key, reseals the stored
// secrets and the CA's keys under it and keeps the old key; everything
// still works (a PKCS#12 export opens in openssl, the PDF password reads,
// the CA signs); a keyring loaded before the rotation (a running serve)
// reads the new values; the spooled message's key is rewrapped too; a
// message spooled under the old key after the rotation (a node that had
// not reloaded) is resealed by --finish, which then deletes the old key.
func TestKeyRotate(t *testing.T) {
	testpeer.Require(t, "openssl")
	dir, cfgFile := backupNode(t, "")
	mustSG(t, cfgFile, "pki", "init")
	mustSG(t, cfgFile, "pki", "rollout")
	pw := filepath.Join(dir, "pw.txt")
	os.WriteFile(pw, []byte("Partner-Passwort-2026\n"), 0o600)
	mustSG(t, cfgFile, "pdf", "password", "set", "partner@example.net", "--password-file", pw)
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := cfg.Path(cfg.PKI.MasterKeyFile)
	running, err := secret.LoadOrCreateKeyring(keyFile) // serve's keyring, loaded before
	if err != nil {
		t.Fatal(err)
	}
	oldID := running.CurrentKeyID()
	// A message waiting in the spool under the old key.
	waiting := gateway.NewID()
	sp, err := gateway.OpenSpool(cfg.DataPath("spool"), running)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Write(&gateway.Envelope{ID: waiting, From: "alice@example.org"}, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}

	out := sgJSON[keyRotateJSON](t, cfgFile, "key", "rotate")
	if out.KeyID == oldID.String() || out.StoreValues < 3 || out.CAKeys != 2 || out.SpoolResealed != 1 || out.SpoolPending != 0 {
		t.Fatalf("rotate: %+v (old key %s)", out, oldID)
	}
	if olds, _ := secret.OldKeyFiles(keyFile); len(olds) != 1 {
		t.Fatalf("old key files %v", olds)
	}
	// Everything opens under the new key.
	ppw := filepath.Join(dir, "p12pw.txt")
	os.WriteFile(ppw, []byte("Export-Passwort-77\n"), 0o600)
	p12 := filepath.Join(dir, "alice.p12")
	mustSG(t, cfgFile, "cert", "export", "alice@example.org", "--p12", p12, "--password-file", ppw)
	if out := testpeer.MustRun(t, nil, "openssl", "pkcs12", "-in", p12, "-passin", "pass:Export-Passwort-77", "-nodes"); !bytes.Contains(out, []byte("PRIVATE KEY")) {
		t.Fatal("openssl cannot read the exported key")
	}
	mustSG(t, cfgFile, "cert", "revoke", "bob@example.org") // the CA signs a CRL with its resealed key
	st, kr, err := openStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := st.PDFPassword(context.Background(), "partner@example.net"); err != nil || string(got) != "Partner-Passwort-2026" {
		t.Fatalf("PDF password after rotation: %q %v", got, err)
	}
	if n, err := st.StaleSecrets(context.Background()); err != nil || n != 0 {
		t.Fatalf("%d secrets under the old key after rotate (%v)", n, err)
	}
	// The keyring loaded before the rotation opens a value sealed under
	// the new key, and then seals under it.
	fresh, _ := kr.Seal([]byte("new"), []byte("aad"))
	if got, err := running.Open(fresh, []byte("aad")); err != nil || string(got) != "new" || running.CurrentKeyID() == oldID {
		t.Fatalf("the running keyring after rotation: %q %v, current %s", got, err, running.CurrentKeyID())
	}
	st.Close()

	// A node that has not reloaded yet spools a message under the old key.
	olds, _ := secret.OldKeyFiles(keyFile)
	lagging, err := secret.LoadOrCreateKeyring(olds[0])
	if err != nil || lagging.CurrentKeyID() != oldID {
		t.Fatalf("the old key file as a keyring: %v", err)
	}
	ls, err := gateway.OpenSpool(cfg.DataPath("spool"), lagging)
	if err != nil {
		t.Fatal(err)
	}
	late := gateway.NewID()
	if _, err := ls.Write(&gateway.Envelope{ID: late, From: "alice@example.org"}, strings.NewReader("Subject: late\r\n\r\nlate body\r\n")); err != nil {
		t.Fatal(err)
	}
	if out := sgJSON[keyRotateJSON](t, cfgFile, "key", "rotate", "--finish"); !out.Finished {
		t.Fatalf("--finish: %+v", out)
	}
	if olds, _ := secret.OldKeyFiles(keyFile); len(olds) != 0 {
		t.Fatalf("old key files left: %v", olds)
	}
	// And everything still opens with the one key left, the spooled
	// messages included.
	mustSG(t, cfgFile, "cert", "export", "alice@example.org", "--p12", p12+".2", "--password-file", ppw)
	only, err := secret.LoadOrCreateKeyring(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	os2, err := gateway.OpenSpool(cfg.DataPath("spool"), only)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{waiting, late} {
		m, err := os2.Open(id)
		if err != nil {
			t.Fatalf("spooled message %s under the new key alone: %v", id, err)
		}
		body, err := io.ReadAll(m)
		m.Close()
		if err != nil || !bytes.Contains(body, []byte("body")) {
			t.Fatalf("spooled message %s: %q %v", id, body, err)
		}
	}
}
