package stepca_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/pki/internal/pkitest"
	"github.com/sealgate/sealgate/pkg/pki/stepca"
)

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) string {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRolloutAgainstStepCA runs the rollout against a real step-ca served
// on loopback: issue within the provisioner's maximum lifetime, openssl
// accepts the certificates for both S/MIME purposes, a departed user is
// revoked and on step-ca's own CRL, and a CA that goes down mid-rollout
// gives a clear error while keeping what was done.
func TestRolloutAgainstStepCA(t *testing.T) {
	testpeer.Require(t, "openssl")
	ctx := context.Background()
	srv := testpeer.StartStepCA(t, stepca.SMIMETemplate, 2160*time.Hour)
	iss, err := stepca.New(ctx, stepca.Config{URL: srv.URL, RootFile: srv.RootFile, Provisioner: srv.Provisioner, Password: srv.Password, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if iss.MaxLifetime() != 2160*time.Hour {
		t.Fatalf("max lifetime = %v, want the provisioner's 2160h", iss.MaxLifetime())
	}
	// Before any signature (nothing cached): GET /intermediates, which
	// step-ca answers with 201 Created.
	if ints, err := iss.Intermediates(ctx); err != nil || len(ints) != 1 || !ints[0].Equal(srv.Issuing) {
		t.Fatalf("intermediates before the first signature: %v %v", ints, err)
	}
	st := pkitest.NewStore()
	src := &pki.StaticSource{Groups: []string{"g"}, List: []pki.StaticUser{
		{Email: "alice@example.org", Aliases: []string{"al@example.org"}, Groups: []string{"g"}},
		{Email: "bob@example.org", Groups: []string{"g"}},
	}}
	m := &pki.Manager{Store: st, Issuer: iss, Users: src, KeyType: pki.RSA2048, Validity: 8760 * time.Hour, RenewBefore: 720 * time.Hour}
	res, err := m.Sync(ctx, pki.ApplyOptions{Parallel: 2})
	if err != nil || res.Issued != 2 || res.Failed != 0 {
		t.Fatalf("rollout: %+v %v", res, err)
	}
	dir := t.TempDir()
	ints, err := iss.Intermediates(ctx)
	if err != nil || len(ints) != 1 || !ints[0].Equal(srv.Issuing) {
		t.Fatalf("intermediates: %v %v", ints, err)
	}
	roots, err := iss.Roots(ctx)
	if err != nil || len(roots) != 1 || !roots[0].Equal(srv.Root) {
		t.Fatalf("roots: %v", err)
	}
	rootPEM := writePEM(t, filepath.Join(dir, "root.pem"), roots...)
	chainPEM := writePEM(t, filepath.Join(dir, "chain.pem"), ints...)
	alice, _ := m.Current(ctx, "alice@example.org")
	x, _ := x509.ParseCertificate(alice.DER)
	if life := time.Until(x.NotAfter); life > 2161*time.Hour || life < 2150*time.Hour {
		t.Errorf("lifetime %v not capped to the provisioner's 2160h", life)
	}
	if len(x.EmailAddresses) != 2 {
		t.Errorf("SANs %v", x.EmailAddresses)
	}
	f := writePEM(t, filepath.Join(dir, "alice.pem"), x)
	for _, p := range []string{"smimesign", "smimeencrypt"} {
		testpeer.MustRun(t, nil, "openssl", "verify", "-CAfile", rootPEM, "-untrusted", chainPEM, "-purpose", p, f)
	}
	if res, _ := m.Sync(ctx, pki.ApplyOptions{}); res.Unchanged != 2 {
		t.Fatalf("second rollout not a no-op: %+v", res)
	}

	// Bob leaves: revoked at step-ca, on its CRL.
	bob, _ := m.Current(ctx, "bob@example.org")
	src.List[1].Groups = nil
	if res, _ := m.Sync(ctx, pki.ApplyOptions{}); res.Revoked != 1 || res.Failed != 0 {
		t.Fatalf("revocation: %+v", res)
	}
	// Revoking again (a rollout retried after a crash) is not an error.
	bobX, _ := x509.ParseCertificate(bob.DER)
	if err := iss.Revoke(ctx, bobX, pki.ReasonAffiliationChanged); err != nil {
		t.Fatalf("second revoke of the same certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Root)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	resp, err := hc.Get(srv.URL + "/1.0/crl")
	if err != nil {
		t.Fatal(err)
	}
	crl, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	crlFile := filepath.Join(dir, "crl.der")
	os.WriteFile(crlFile, crl, 0o644)
	out := testpeer.MustRun(t, nil, "openssl", "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text")
	if !strings.Contains(strings.ToUpper(string(out)), strings.ToUpper(bob.Serial)) {
		t.Fatalf("bob's serial %s not on step-ca's CRL:\n%s", bob.Serial, out)
	}

	// The CA goes down: carol fails with a clear error, alice is kept.
	srv.Stop()
	src.List = append(src.List, pki.StaticUser{Email: "carol@example.org", Groups: []string{"g"}})
	res, _ = m.Sync(ctx, pki.ApplyOptions{})
	if res.Failed != 1 || res.Unchanged != 1 || !strings.Contains(res.Errors[0].Error, "step-ca") {
		t.Fatalf("CA down: %+v", res)
	}
	if _, err := m.Current(ctx, "alice@example.org"); err != nil {
		t.Fatalf("alice lost after CA outage: %v", err)
	}
}
