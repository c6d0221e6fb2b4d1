package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/smime"
)

// TestEncryptionFollowsHarvestedCapabilities (issue 16, outbound): a
// partner whose signed mail announced AES-GCM and RSA-OAEP (a client like
// ours) gets AuthEnvelopedData with OAEP, which openssl decrypts; a
// partner whose client (openssl cms -sign) announced only CBC algorithms
// gets AES-256-CBC with PKCS#1 v1.5, which gpgsm decrypts. Both learnt
// from harvesting their signed messages with `directory import`;
// `directory lookup` says which algorithms and why.
func TestEncryptionFollowsHarvestedCapabilities(t *testing.T) {
	testpeer.Require(t, "openssl")
	pk := testpeer.NewPKI(t)
	modern := pk.Issue(t, "modern@partner.test", testpeer.IssueOptions{})
	legacy := pk.Issue(t, "legacy@partner.test", testpeer.IssueOptions{})
	gsm := testpeer.NewGpgsm(t, pk, legacy)

	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(oracleConfig, filepath.Join(dir, "data"), pk.ChainFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The modern partner's mail, signed as sealgate signs (its
	// SMIMECapabilities list AES-GCM and RSA-OAEP first).
	signedModern, err := smime.Sign([]byte("From: modern@partner.test\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"),
		modern.Key, []*x509.Certificate{modern.Cert, pk.Inter}, nil)
	if err != nil {
		t.Fatal(err)
	}
	modernEML := testpeer.WriteFile(t, dir, "modern.eml", signedModern)
	// The legacy partner's mail, signed by openssl (its default
	// capabilities: CBC ciphers only).
	plain := testpeer.WriteFile(t, dir, "legacy.txt", []byte("From: legacy@partner.test\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"))
	legacyEML := filepath.Join(dir, "legacy.eml")
	testpeer.MustRun(t, nil, "openssl", "cms", "-sign", "-in", plain, "-signer", legacy.CertFile, "-inkey", legacy.KeyFile,
		"-certfile", pk.InterFile, "-out", legacyEML)
	mustSG(t, cfgFile, "directory", "import", modernEML, legacyEML)

	look := func(addr string) lookupJSON { return sgJSON[lookupJSON](t, cfgFile, "directory", "lookup", addr) }
	if l := look("modern@partner.test"); l.Origin != "harvested" || l.Encryption == nil || l.Encryption.Content != "AES-256-GCM" || l.Encryption.KeyTransport != "RSAES-OAEP" {
		t.Fatalf("directory lookup modern: origin %q, %+v", l.Origin, l.Encryption)
	}
	if e := look("legacy@partner.test").Encryption; e == nil || e.Content != "AES-256-CBC" || e.KeyTransport != "RSA PKCS#1 v1.5" || !strings.Contains(e.Why, "lack") {
		t.Fatalf("directory lookup legacy: %+v", e)
	}

	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _, _, pipeline := servePieces(t, ctx, cfg, slog.New(slog.DiscardHandler))
	send := func(to string) []byte {
		t.Helper()
		msg := []byte("From: alice@example.org\r\nTo: " + to + "\r\nSubject: reply\r\nMessage-ID: <r@example.org>\r\n\r\nthe answer\r\n")
		plan, err := pipeline.Process(ctx, &gateway.Envelope{ID: "c1", From: "alice@example.org"}, []string{to}, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Parcels) != 1 || plan.Parcels[0].Method != "smime" {
			t.Fatalf("to %s: %+v", to, plan)
		}
		return plan.Parcels[0].Data
	}

	toModern := testpeer.WriteFile(t, dir, "to-modern.eml", send("modern@partner.test"))
	printed := string(testpeer.MustRun(t, nil, "openssl", "cms", "-cmsout", "-print", "-in", toModern))
	if !strings.Contains(printed, "authEnvelopedData") || !strings.Contains(printed, "rsaesOaep") || !strings.Contains(printed, "aes-256-gcm") {
		t.Fatalf("to the modern partner, want AuthEnvelopedData with RSA-OAEP and AES-256-GCM:\n%.3000s", printed)
	}
	out := testpeer.MustRun(t, nil, "openssl", "cms", "-decrypt", "-in", toModern, "-recip", modern.CertFile, "-inkey", modern.KeyFile)
	if !bytes.Contains(out, []byte("the answer")) {
		t.Fatalf("openssl decrypted %q", out)
	}

	toLegacy := testpeer.WriteFile(t, dir, "to-legacy.eml", send("legacy@partner.test"))
	printed = string(testpeer.MustRun(t, nil, "openssl", "cms", "-cmsout", "-print", "-in", toLegacy))
	if strings.Contains(printed, "authEnvelopedData") || strings.Contains(printed, "rsaesOaep") || !strings.Contains(printed, "aes-256-cbc") {
		t.Fatalf("to the legacy partner, want EnvelopedData, AES-256-CBC, PKCS#1 v1.5:\n%.3000s", printed)
	}
	der := testpeer.MustRun(t, nil, "openssl", "cms", "-cmsout", "-in", toLegacy, "-outform", "DER")
	if r := gsm.Decrypt(t, der, legacy.P12Password); r.ExitCode != 0 || !bytes.Contains(r.Stdout, []byte("the answer")) {
		t.Fatalf("gpgsm --decrypt: exit %d\n%s\n%s", r.ExitCode, r.Stdout, r.Stderr)
	}
}
