package main

import (
	"bytes"
	"context"
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
// reads the new values; --finish refuses while a spooled message still
// uses the old key and deletes the old key once nothing does.
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
	if out.KeyID == oldID.String() || out.StoreValues < 3 || out.CAKeys != 2 || out.SpoolPending != 1 {
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

	code, _, stderr := sg(t, cfgFile, "key", "rotate", "--finish")
	if code == 0 || !strings.Contains(stderr, "1 spooled messages still use an old key") {
		t.Fatalf("--finish with a message on the old key: exit %d, %s", code, stderr)
	}
	if olds, _ := secret.OldKeyFiles(keyFile); len(olds) != 1 {
		t.Fatal("--finish deleted the old key while a message needs it")
	}
	if err := sp.Remove(waiting); err != nil { // delivered
		t.Fatal(err)
	}
	if out := sgJSON[keyRotateJSON](t, cfgFile, "key", "rotate", "--finish"); !out.Finished {
		t.Fatalf("--finish: %+v", out)
	}
	if olds, _ := secret.OldKeyFiles(keyFile); len(olds) != 0 {
		t.Fatalf("old key files left: %v", olds)
	}
	// And everything still opens with the one key left.
	mustSG(t, cfgFile, "cert", "export", "alice@example.org", "--p12", p12+".2", "--password-file", ppw)
}
