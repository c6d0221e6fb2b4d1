package e2e

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki/stepca"
)

// TestServeWithStepCA: `sealgate serve` with pki.issuer = "stepca" gets
// its users' certificates from a real step-ca (smallstep's server, on
// loopback): the sync at start issues Alice's, and her mail to a partner
// arrives encrypted and signed with it, with step-ca's intermediate in the
// signature, so that openssl verifies it against step-ca's root alone.
func TestServeWithStepCA(t *testing.T) {
	for _, p := range []string{"openssl", "swaks"} {
		testpeer.Require(t, p)
	}
	ca := testpeer.StartStepCA(t, stepca.SMIMETemplate, 2160*time.Hour)
	partners := testpeer.NewPKI(t)
	carol := partners.Issue(t, "carol@partner.test", testpeer.IssueOptions{})
	g := newGateway(t, fmt.Sprintf("\n[trust]\nca_files = [%q, %q]\nsystem_roots = false\n", partners.RootFile, partners.InterFile))
	pwFile := filepath.Join(g.dir, "provisioner.pw")
	if err := os.WriteFile(pwFile, append(ca.Password, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	pkiSection := "issuer = \"embedded\"\nkey_type = \"rsa2048\"\nsync_interval = \"1h\"\n"
	if !bytes.Contains(cfg, []byte(pkiSection)) {
		t.Fatal("the e2e config template changed: update this test")
	}
	cfg = bytes.Replace(cfg, []byte(pkiSection), fmt.Appendf(nil, `issuer = "stepca"
key_type = "p256"
validity = "2160h"
sync_interval = "1h"

[pki.stepca]
url = %q
root_file = %q
provisioner = %q
provisioner_password_file = %q
`, ca.URL, ca.RootFile, ca.Provisioner, pwFile), 1)
	if err := os.WriteFile(g.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.logText())
		}
	})
	g.cli("directory", "import", carol.CertFile)
	g.start()

	// The sync at start issues Alice's certificate at step-ca.
	deadline := time.Now().Add(60 * time.Second)
	var shown string
	for {
		shown = string(g.cli("cert", "show", "alice@example.org"))
		if strings.Contains(shown, "active") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(shown, "active") || !strings.Contains(shown, "Test step-ca Intermediate") {
		t.Fatalf("no active certificate from step-ca for alice:\n%s\n%s", shown, g.logText())
	}

	swaks(t, g.addr, "alice@example.org", "carol@partner.test", []string{"Subject: numbers"}, "signed by step-ca")
	box := g.waitOutbox("carol@partner.test")
	dir := t.TempDir()
	enc := filepath.Join(dir, "enc.eml")
	os.WriteFile(enc, stripEnvelopeFields(box["carol@partner.test"]), 0o600)
	dec := testpeer.MustRun(t, nil, "openssl", "cms", "-decrypt", "-in", enc, "-recip", carol.CertFile, "-inkey", carol.KeyFile)
	signer := filepath.Join(dir, "signer.pem")
	// Only the root: the intermediate must come with the message.
	res := testpeer.Run(t, dec, "openssl", "cms", "-verify", "-CAfile", ca.RootFile, "-purpose", "smimesign", "-signer", signer)
	if res.ExitCode != 0 || !bytes.Contains(res.Stdout, []byte("signed by step-ca")) {
		t.Fatalf("openssl cms -verify against step-ca's root: exit %d\n%s\n%s", res.ExitCode, res.Stderr, g.logText())
	}
	b, _ := os.ReadFile(signer)
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("openssl wrote no signer certificate")
	}
	if got := testpeer.Run(t, nil, "openssl", "x509", "-in", signer, "-noout", "-issuer", "-ext", "subjectAltName"); !bytes.Contains(got.Stdout, []byte("Test step-ca Intermediate")) || !bytes.Contains(got.Stdout, []byte("alice@example.org")) {
		t.Fatalf("signer is not Alice's step-ca certificate:\n%s", got.Stdout)
	}
}
