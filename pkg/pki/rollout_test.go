package pki_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/pki/internal/pkitest"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// testCA is one embedded CA per test binary: RSA key generation for the CA
// is the slow part and every test may share the same CA.
type testCA struct {
	ca      *embeddedca.CA
	dir     string
	rootPEM string // file
	chain   string // issuing CA PEM file
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	dir := t.TempDir()
	sealer := pkitest.NewSealer()
	if _, err := embeddedca.Init(dir, sealer, embeddedca.InitOptions{KeyBits: 2048}); err != nil {
		t.Fatal(err)
	}
	ca, err := embeddedca.Open(dir, sealer, embeddedca.Options{CRLURL: "http://127.0.0.1:8080/crl"})
	if err != nil {
		t.Fatal(err)
	}
	tc := testCA{ca: ca, dir: dir, rootPEM: filepath.Join(dir, "root.crt"), chain: filepath.Join(dir, "issuing.crt")}
	return tc
}

// newStore opens the real SQLite store with a fresh master key.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	dir := t.TempDir()
	kr, err := secret.LoadOrCreateKeyring(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Options{Driver: "sqlite", Path: filepath.Join(dir, "sealgate.db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func writePEM(t *testing.T, path string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func staticUsers(emails ...string) []pki.StaticUser {
	var out []pki.StaticUser
	for _, e := range emails {
		out = append(out, pki.StaticUser{Email: e, Name: strings.Split(e, "@")[0], Groups: []string{"smime-users"}})
	}
	return out
}

func TestRolloutStaticEmbedded(t *testing.T) {
	testpeer.Require(t, "openssl")
	ctx := context.Background()
	tc := newTestCA(t)
	st := newStore(t)
	src := &pki.StaticSource{Groups: []string{"smime-users"}, List: staticUsers("alice@example.org", "bob@example.org", "carol@example.org")}
	src.List[0].Aliases = []string{"Alice.Example@example.org"}
	src.List = append(src.List, pki.StaticUser{Email: "mallory@example.org", Groups: []string{"other"}})
	now := time.Now()
	m := &pki.Manager{Store: st, Issuer: tc.ca, Users: src, KeyType: pki.RSA2048, Validity: 365 * 24 * time.Hour,
		RenewBefore: 30 * 24 * time.Hour, Now: func() time.Time { return now }}

	plan, err := m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Count(pki.ActionIssue); got != 3 || len(plan.Steps) != 3 {
		t.Fatalf("plan: %d issue steps of %d, want 3 of 3: %+v", got, len(plan.Steps), plan.Steps)
	}
	res := m.Apply(ctx, plan, pki.ApplyOptions{Parallel: 2})
	if res.Issued != 3 || res.Failed != 0 {
		t.Fatalf("apply: %+v", res)
	}

	// The peers decide: openssl verifies both S/MIME purposes against the
	// chain and sees the alias as a SAN.
	dir := t.TempDir()
	for _, email := range []string{"alice@example.org", "bob@example.org", "carol@example.org"} {
		cur, err := m.Current(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		f := writePEM(t, filepath.Join(dir, email+".pem"), cur.DER)
		for _, purpose := range []string{"smimesign", "smimeencrypt"} {
			out := testpeer.MustRun(t, nil, "openssl", "verify", "-CAfile", tc.rootPEM, "-untrusted", tc.chain, "-purpose", purpose, f)
			if !strings.Contains(string(out), ": OK") {
				t.Fatalf("openssl verify %s %s: %s", purpose, email, out)
			}
		}
		text := string(testpeer.MustRun(t, nil, "openssl", "x509", "-in", f, "-noout", "-text"))
		for _, want := range []string{"email:" + email, "E-mail Protection", "Digital Signature, Key Encipherment", "URI:http://127.0.0.1:8080/crl"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s certificate lacks %q:\n%s", email, want, text)
			}
		}
		if email == "alice@example.org" && !strings.Contains(text, "email:alice.example@example.org") {
			t.Errorf("alias missing from SANs:\n%s", text)
		}
	}

	// The gateway's view: key, certificate and chain for signing.
	id, err := m.Identity(ctx, "alice@example.org")
	if err != nil || len(id.Chain) != 1 || id.Cert.CheckSignatureFrom(id.Chain[0]) != nil {
		t.Fatalf("identity: %+v %v", id, err)
	}
	if _, err := m.Identity(ctx, "mallory@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("identity of a user without certificate: %v", err)
	}

	// Second rollout: nothing to do.
	plan, err = m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := plan.Count(pki.ActionUnchanged); n != 3 {
		t.Fatalf("second plan not a no-op: %+v", plan.Steps)
	}

	// Bob leaves the group: revoked, and on the CRL per openssl.
	bob, _ := m.Current(ctx, "bob@example.org")
	src.List[1].Groups = nil
	res = mustSync(t, m)
	if res.Revoked != 1 || res.Unchanged != 2 {
		t.Fatalf("after removal: %+v", res)
	}
	crlDER, err := tc.ca.CRL()
	if err != nil {
		t.Fatal(err)
	}
	crlPEM := filepath.Join(dir, "crl.pem")
	os.WriteFile(crlPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}), 0o644)
	bobPEM := writePEM(t, filepath.Join(dir, "bob.pem"), bob.DER)
	r := testpeer.Run(t, nil, "openssl", "verify", "-crl_check", "-CAfile", tc.rootPEM, "-untrusted", tc.chain, "-CRLfile", crlPEM, "-purpose", "smimesign", bobPEM)
	if r.ExitCode == 0 || !strings.Contains(string(r.Stdout)+string(r.Stderr), "certificate revoked") {
		t.Fatalf("openssl does not see bob revoked: %s %s", r.Stdout, r.Stderr)
	}
	carol, _ := m.Current(ctx, "carol@example.org")
	carolPEM := writePEM(t, filepath.Join(dir, "carol2.pem"), carol.DER)
	testpeer.MustRun(t, nil, "openssl", "verify", "-crl_check", "-CAfile", tc.rootPEM, "-untrusted", tc.chain, "-CRLfile", crlPEM, carolPEM)

	// Carol gets an alias: re-issued, the old one revoked as superseded.
	src.List[2].Aliases = []string{"c@example.org"}
	res = mustSync(t, m)
	if res.Renewed != 1 {
		t.Fatalf("address change: %+v", res)
	}
	if got, _ := m.Current(ctx, "carol@example.org"); got.Serial == carol.Serial || len(got.Addresses) != 2 {
		t.Fatalf("carol not re-issued with alias: %+v", got)
	}
	if ok, _ := tc.ca.IsRevoked(carol.Serial); !ok {
		t.Fatal("carol's old certificate not revoked after re-issue")
	}

	// A year later everybody is inside renew_before: renewed, old ones superseded.
	now = now.Add(340 * 24 * time.Hour)
	res = mustSync(t, m)
	if res.Renewed != 2 || res.Failed != 0 {
		t.Fatalf("renewal: %+v", res)
	}
	certs, _ := st.Certificates(ctx, "alice@example.org")
	states := map[string]int{}
	for _, c := range certs {
		states[c.State]++
	}
	if states[pki.StateActive] != 1 || states[pki.StateSuperseded] != 1 {
		t.Fatalf("alice after renewal: %v", states)
	}
	events, err := st.AuditEvents(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if n := countAudit(events, "certificate.issue"); n != 6 {
		t.Errorf("audit has %d issue events, want 6", n)
	}
	if n := countAudit(events, "certificate.revoke"); n != 2 {
		t.Errorf("audit has %d revoke events, want 2", n)
	}
	for _, e := range events {
		if strings.Contains(e.Detail, "PRIVATE") {
			t.Fatalf("audit event carries key material: %+v", e)
		}
	}
}

// A rollout that dies halfway (the store fails mid-way, as if killed) and
// is run again ends with exactly one active certificate per user and no
// orphan keys beyond the one reused.
func TestRolloutResumesWithoutDuplicates(t *testing.T) {
	ctx := context.Background()
	tc := newTestCA(t)
	st := pkitest.NewStore()
	var emails []string
	for _, c := range "abcdefgh" {
		emails = append(emails, string(c)+"@example.org")
	}
	src := &pki.StaticSource{Groups: []string{"smime-users"}, List: staticUsers(emails...)}
	m := &pki.Manager{Store: st, Issuer: tc.ca, Users: src, KeyType: pki.P256, Validity: 24 * time.Hour * 365, RenewBefore: 24 * time.Hour}
	st.FailPutCertificateAfter = 3
	res := mustSync(t, m)
	if res.Issued != 3 || res.Failed != 5 || len(res.Errors) != 5 {
		t.Fatalf("crashed run: %+v", res)
	}
	st.FailPutCertificateAfter = 0
	res = mustSync(t, m)
	if res.Issued != 5 || res.Unchanged != 3 || res.Failed != 0 {
		t.Fatalf("rerun: %+v", res)
	}
	for _, e := range emails {
		certs, _ := st.Certificates(ctx, e)
		if len(certs) != 1 || certs[0].State != pki.StateActive {
			t.Fatalf("%s has %d certificates after rerun", e, len(certs))
		}
		x, _ := x509.ParseCertificate(certs[0].DER)
		if x.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyAgreement {
			t.Errorf("EC key usage = %v", x.KeyUsage)
		}
	}
	if st.KeyCount() != len(emails) {
		t.Fatalf("%d keys stored for %d users: the rerun did not reuse the keys of the crashed run", st.KeyCount(), len(emails))
	}
	if res := mustSync(t, m); res.Unchanged != len(emails) {
		t.Fatalf("third run not a no-op: %+v", res)
	}
}

func mustSync(t *testing.T, m *pki.Manager) pki.Result {
	t.Helper()
	res, err := m.Sync(context.Background(), pki.ApplyOptions{Parallel: 3})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func countAudit(events []store.AuditEvent, action string) int {
	n := 0
	for _, e := range events {
		if e.Action == action {
			n++
		}
	}
	return n
}
