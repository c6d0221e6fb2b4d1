package directory

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// ldapEntry is one person in the test key server.
type ldapEntry struct {
	uid, mail  string
	proxy      []string
	certs      []*x509.Certificate // userCertificate;binary values
	smimeBlobs [][]byte            // userSMIMECertificate values (DER PKCS #7)
}

func entriesLDIF(entries []ldapEntry) string {
	var b strings.Builder
	b.WriteString("dn: ou=people,dc=example,dc=test\nobjectClass: organizationalUnit\nou: people\n\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "dn: uid=%s,ou=people,dc=example,dc=test\nobjectClass: inetOrgPerson\nobjectClass: adUser\nuid: %s\ncn: %s\nsn: %s\nmail: %s\n", e.uid, e.uid, e.uid, e.uid, e.mail)
		for _, p := range e.proxy {
			fmt.Fprintf(&b, "proxyAddresses: %s\n", p)
		}
		for _, c := range e.certs {
			fmt.Fprintf(&b, "userCertificate;binary:: %s\n", base64.StdEncoding.EncodeToString(c.Raw))
		}
		for _, blob := range e.smimeBlobs {
			fmt.Fprintf(&b, "userSMIMECertificate:: %s\n", base64.StdEncoding.EncodeToString(blob))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// p7cByOpenSSL makes a certs-only PKCS #7 the way admins do for
// userSMIMECertificate: openssl crl2pkcs7 -nocrl -certfile.
func p7cByOpenSSL(t testing.TB, certs ...*x509.Certificate) []byte {
	t.Helper()
	dir := t.TempDir()
	var pemData []byte
	for _, c := range certs {
		pemData = append(pemData, certPEM(c)...)
	}
	f := writeFile(t, dir, "certs.pem", pemData)
	return testpeer.MustRun(t, nil, "openssl", "crl2pkcs7", "-nocrl", "-certfile", f, "-outform", "DER")
}

// signedBlobByOpenSSL makes a userSMIMECertificate value the way Outlook
// publishes one: a SignedData by the user over empty content, carrying
// the certificates and the SMIMECapabilities attribute.
func signedBlobByOpenSSL(t testing.TB, signer *x509.Certificate, chain ...*x509.Certificate) []byte {
	t.Helper()
	dir := t.TempDir()
	keyDER, err := x509.MarshalPKCS8PrivateKey(testLeafKey(t))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, dir, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	certFile := writeFile(t, dir, "signer.pem", certPEM(signer))
	empty := writeFile(t, dir, "empty", nil)
	args := []string{"cms", "-sign", "-nodetach", "-binary", "-in", empty, "-signer", certFile, "-inkey", keyFile, "-md", "sha256", "-outform", "DER"}
	if len(chain) > 0 {
		var pemData []byte
		for _, c := range chain {
			pemData = append(pemData, certPEM(c)...)
		}
		args = append(args, "-certfile", writeFile(t, dir, "chain.pem", pemData))
	}
	return testpeer.MustRun(t, nil, "openssl", args...)
}

// keyserverFixture is a slapd holding one entry per case of issue 5.
type keyserverFixture struct {
	slapd            *testpeer.Slapd
	ca, rogue        *testCA
	good, twoOld     *x509.Certificate
	twoNew, proxyCrt *x509.Certificate
	revoked          *x509.Certificate
	outlook          *x509.Certificate
	mixedCase        *x509.Certificate
}

func newKeyserverFixture(t testing.TB) *keyserverFixture {
	t.Helper()
	testpeer.Require(t, "slapd")
	f := &keyserverFixture{ca: newTestCA(t, "Partner Root", true), rogue: newTestCA(t, "Rogue Root", false)}
	ca := f.ca
	f.good = ca.issue(t, leafSpec{emails: []string{"good@example.test"}})
	expired := ca.issue(t, leafSpec{emails: []string{"expired@example.test"}, notBefore: time.Now().Add(-400 * 24 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)})
	wrongEKU := ca.issue(t, leafSpec{emails: []string{"wrongeku@example.test"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	otherAddr := ca.issue(t, leafSpec{emails: []string{"someone.else@example.test"}})
	f.revoked = ca.issue(t, leafSpec{emails: []string{"revoked@example.test"}})
	ca.revoke(f.revoked)
	f.twoOld = ca.issue(t, leafSpec{emails: []string{"two@example.test"}, notBefore: time.Now().Add(-30 * 24 * time.Hour)})
	f.twoNew = ca.issue(t, leafSpec{emails: []string{"two@example.test"}, notBefore: time.Now().Add(-2 * time.Hour)})
	untrusted := f.rogue.issue(t, leafSpec{emails: []string{"untrusted@example.test"}})
	weak := ca.issue(t, leafSpec{emails: []string{"weak@example.test"}, weakKey: true})
	signOnly := ca.issue(t, leafSpec{emails: []string{"signonly@example.test"}, keyUsage: x509.KeyUsageDigitalSignature})
	f.proxyCrt = ca.issue(t, leafSpec{emails: []string{"proxy.alias@example.test"}})
	f.outlook = ca.issue(t, leafSpec{emails: []string{"outlook@example.test"}})
	f.mixedCase = ca.issue(t, leafSpec{emails: []string{"John.Doe@Example.Test"}})

	entries := []ldapEntry{
		{uid: "good", mail: "good@example.test", certs: []*x509.Certificate{f.good}},
		{uid: "expired", mail: "expired@example.test", certs: []*x509.Certificate{expired}},
		{uid: "wrongeku", mail: "wrongeku@example.test", certs: []*x509.Certificate{wrongEKU}},
		{uid: "other", mail: "other@example.test", certs: []*x509.Certificate{otherAddr}},
		{uid: "revoked", mail: "revoked@example.test", certs: []*x509.Certificate{f.revoked}},
		{uid: "two", mail: "two@example.test", certs: []*x509.Certificate{f.twoOld, f.twoNew}},
		{uid: "untrusted", mail: "untrusted@example.test", certs: []*x509.Certificate{untrusted}},
		{uid: "weak", mail: "weak@example.test", certs: []*x509.Certificate{weak}},
		{uid: "signonly", mail: "signonly@example.test", certs: []*x509.Certificate{signOnly}},
		{uid: "proxy", mail: "main@example.test", proxy: []string{"SMTP:main@example.test", "smtp:proxy.alias@example.test"},
			smimeBlobs: [][]byte{p7cByOpenSSL(t, f.proxyCrt, ca.cert)}},
		{uid: "nocert", mail: "nocert@example.test"},
		{uid: "jdoe", mail: "John.Doe@example.test", certs: []*x509.Certificate{f.mixedCase}},
		{uid: "outlook", mail: "outlook@example.test", smimeBlobs: [][]byte{signedBlobByOpenSSL(t, f.outlook, ca.cert)}},
	}
	f.slapd = testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: "dc=example,dc=test", LDIF: entriesLDIF(entries)})
	return f
}

func (f *keyserverFixture) directory(t testing.TB, revocation string, extra ...Source) (*Directory, *LDAPSource) {
	t.Helper()
	v, err := NewValidator(ValidatorOptions{Roots: poolOf(f.ca.cert), Revocation: revocation})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewLDAPSource(LDAPSourceOptions{Name: "partners", URL: f.slapd.URL, BaseDN: "dc=example,dc=test", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{Sources: append(extra, ks), Validator: v})
	if err != nil {
		t.Fatal(err)
	}
	return d, ks
}

func failedChecks(ev Evaluated) []string {
	var out []string
	for _, c := range ev.Checks {
		if !c.OK {
			out = append(out, c.Name)
		}
	}
	return out
}

func checkDetail(ev Evaluated, name string) string {
	for _, c := range ev.Checks {
		if c.Name == name {
			return c.Detail
		}
	}
	return ""
}

// TestLookupAgainstSlapd covers every "done when" case of issue 5 against
// a real OpenLDAP server, with the CRL served over HTTP.
func TestLookupAgainstSlapd(t *testing.T) {
	f := newKeyserverFixture(t)
	d, _ := f.directory(t, RevocationHardFail)

	tests := []struct {
		email      string
		answer     string
		want       *x509.Certificate // the chosen certificate when found
		failed     string            // the one check that fails when not found
		detailPart string            // part of that check's detail
		alsoFailed string            // a check that cannot pass because of the first
	}{
		{email: "good@example.test", answer: AnswerFound, want: f.good},
		// The local part differs in case from the certificate's and the
		// entry's: the same mailbox (issue 12 item 7), found.
		{email: "GOOD@EXAMPLE.TEST", answer: AnswerFound, want: f.good},
		{email: "john.doe@example.test", answer: AnswerFound, want: f.mixedCase},
		{email: "good@Example.Test", answer: AnswerFound, want: f.good},
		{email: "expired@example.test", answer: AnswerNoValid, failed: CheckValidity, detailPart: "expired"},
		{email: "wrongeku@example.test", answer: AnswerNoValid, failed: CheckExtKeyUsage, detailPart: "lacks emailProtection (has serverAuth)"},
		{email: "other@example.test", answer: AnswerNoValid, failed: CheckAddress, detailPart: "someone.else@example.test"},
		{email: "revoked@example.test", answer: AnswerNoValid, failed: CheckRevocation, detailPart: "revoked at"},
		{email: "two@example.test", answer: AnswerFound, want: f.twoNew},
		{email: "untrusted@example.test", answer: AnswerNoValid, failed: CheckChain, detailPart: "untrusted", alsoFailed: CheckRevocation},
		{email: "weak@example.test", answer: AnswerNoValid, failed: CheckKeyStrength, detailPart: "RSA 1024 bits"},
		{email: "signonly@example.test", answer: AnswerNoValid, failed: CheckKeyUsage, detailPart: "lacks keyEncipherment"},
		{email: "proxy.alias@example.test", answer: AnswerFound, want: f.proxyCrt},
		{email: "nocert@example.test", answer: AnswerNotFound},
		{email: "nobody@example.test", answer: AnswerNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.email, func(t *testing.T) {
			r, err := d.Lookup(context.Background(), tc.email)
			if err != nil {
				t.Fatal(err)
			}
			if r.Answer != tc.answer {
				t.Fatalf("answer %q, want %q; candidates: %+v", r.Answer, tc.answer, r.Candidates)
			}
			if tc.want != nil {
				if !r.Found || !r.Certificate().Equal(tc.want) {
					t.Fatalf("chose %v, want serial %v", r.Certificate(), tc.want.SerialNumber)
				}
				if r.Chosen.Source != "keyserver partners" {
					t.Errorf("source %q", r.Chosen.Source)
				}
				for _, c := range r.Chosen.Checks {
					if !c.OK {
						t.Errorf("chosen certificate has failing check %+v", c)
					}
				}
				return
			}
			if tc.failed == "" {
				if len(r.Candidates) != 0 {
					t.Fatalf("want no candidates, got %d", len(r.Candidates))
				}
				return
			}
			if len(r.Candidates) != 1 {
				t.Fatalf("want 1 candidate, got %d", len(r.Candidates))
			}
			ev := r.Candidates[0]
			want := strings.TrimSpace(tc.failed + " " + tc.alsoFailed)
			if got := strings.Join(failedChecks(ev), " "); got != want {
				t.Fatalf("failed checks %q, want %q; checks %+v", got, want, ev.Checks)
			}
			if d := checkDetail(ev, tc.failed); !strings.Contains(d, tc.detailPart) {
				t.Fatalf("%s detail %q lacks %q", tc.failed, d, tc.detailPart)
			}
		})
	}

	// A signed userSMIMECertificate (as Outlook publishes) gives the
	// capabilities with the certificate; a certs-only .p7c gives none.
	r, err := d.Lookup(context.Background(), "outlook@example.test")
	if err != nil || !r.Found || !r.Certificate().Equal(f.outlook) || len(r.Chosen.Capabilities) == 0 {
		t.Fatalf("signed userSMIMECertificate: %+v %v", r, err)
	}
	var caps []struct {
		ID     asn1.ObjectIdentifier
		Params asn1.RawValue `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(r.Chosen.Capabilities, &caps); err != nil || len(caps) == 0 ||
		!caps[0].ID.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}) {
		t.Fatalf("capabilities %x: %v %+v (want aes256-CBC first, openssl's default)", r.Chosen.Capabilities, err, caps)
	}
	if r, _ := d.Lookup(context.Background(), "proxy.alias@example.test"); r.Chosen == nil || r.Chosen.Capabilities != nil {
		t.Fatalf("certs-only .p7c produced capabilities: %+v", r)
	}

	// The untrusted candidate is refused in soft-fail mode too: soft-fail
	// only forgives an unknown revocation status, never a missing chain.
	soft, _ := f.directory(t, RevocationSoftFail)
	if r, _ := soft.Lookup(context.Background(), "untrusted@example.test"); r.Found {
		t.Fatalf("soft-fail accepted an untrusted certificate")
	}
}

// TestKeyserverDownAndHanging: a dead server costs one timeout, then the
// breaker skips it until its retry time, and it is used again after.
func TestKeyserverDownAndHanging(t *testing.T) {
	f := newKeyserverFixture(t)
	clock := &fakeClock{t: time.Now()}
	v, err := NewValidator(ValidatorOptions{Roots: poolOf(f.ca.cert)})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewLDAPSource(LDAPSourceOptions{Name: "partners", URL: f.slapd.URL, BaseDN: "dc=example,dc=test",
		Timeout: 300 * time.Millisecond, RetryAfter: time.Minute, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{Sources: []Source{ks}, Validator: v})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	f.slapd.Freeze(t) // accepts TCP, answers nothing
	r, err := d.Lookup(ctx, "good@example.test")
	if !errors.Is(err, ErrUndecided) {
		t.Fatalf("hanging server: error %v, want one wrapping ErrUndecided", err)
	}
	if r.Found || r.Answer != AnswerUnavailable || !strings.Contains(strings.Join(r.Unavailable, ""), "no answer within 300ms") {
		t.Fatalf("hanging server: %+v", r)
	}
	// Next lookups (another address: nothing cached) skip the server.
	r, _ = d.Lookup(ctx, "two@example.test")
	if r.Answer != AnswerUnavailable || !strings.Contains(strings.Join(r.Unavailable, ""), "skipped until") {
		t.Fatalf("breaker did not skip the hanging server: %+v", r)
	}
	// Unavailable answers are not cached: after the retry time and with
	// the server back, the same address is found.
	f.slapd.Thaw(t)
	clock.advance(61 * time.Second)
	if r, _ = d.Lookup(ctx, "good@example.test"); !r.Found {
		t.Fatalf("after retry time: %+v", r)
	}

	// A server that is down (connection refused).
	f.slapd.Stop()
	r, _ = d.Lookup(ctx, "two@example.test")
	if r.Answer != AnswerUnavailable || !strings.Contains(strings.Join(r.Unavailable, ""), "connect") {
		t.Fatalf("down server: %+v", r)
	}
	r, _ = d.Lookup(ctx, "revoked@example.test")
	if !strings.Contains(strings.Join(r.Unavailable, ""), "skipped until") {
		t.Fatalf("breaker did not open for the down server: %+v", r)
	}
	// Back up: the breaker waits (doubled after a second failure is not the
	// case here: the last probe succeeded) and then probes once.
	f.slapd.Restart(t)
	clock.advance(61 * time.Second)
	if r, _ = d.Lookup(ctx, "two@example.test"); !r.Found || !r.Certificate().Equal(f.twoNew) {
		t.Fatalf("after restart: %+v", r)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// TestKeyserverErrorsAreUndecided: a key server that answers, but not
// with the full answer, does not show that the address has no
// certificate. Before, a missing base DN and a truncated (size-limited)
// answer both ended as "not found", cached, and a plain copy left.
func TestKeyserverErrorsAreUndecided(t *testing.T) {
	testpeer.Require(t, "slapd")
	ca := newTestCA(t, "Partner Root", false)
	good := ca.issue(t, leafSpec{emails: []string{"good@example.test"}})
	entries := []ldapEntry{{uid: "good", mail: "good@example.test", certs: []*x509.Certificate{good}}}
	// More entries for one address than a search returns (size limit 50),
	// the one with the certificate among the last.
	for i := range 60 {
		e := ldapEntry{uid: fmt.Sprintf("crowd%02d", i), mail: "crowd@example.test"}
		if i == 59 {
			e.certs = []*x509.Certificate{ca.issue(t, leafSpec{emails: []string{"crowd@example.test"}})}
		}
		entries = append(entries, e)
	}
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: "dc=example,dc=test", LDIF: entriesLDIF(entries)})
	v, err := NewValidator(ValidatorOptions{Roots: poolOf(ca.cert)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, baseDN, email string
		answer              string
		why                 string
	}{
		{name: "control: found", baseDN: "dc=example,dc=test", email: "good@example.test", answer: AnswerFound},
		{name: "base DN missing on the server", baseDN: "ou=gone,dc=example,dc=test", email: "good@example.test",
			answer: AnswerUnavailable, why: "does not exist on the server"},
		{name: "answer truncated by the size limit", baseDN: "dc=example,dc=test", email: "crowd@example.test",
			answer: AnswerUnavailable, why: "more than 50 entries match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := NewLDAPSource(LDAPSourceOptions{Name: "partners", URL: slapd.URL, BaseDN: tc.baseDN, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer ks.Close()
			d, err := New(Options{Sources: []Source{ks}, Validator: v})
			if err != nil {
				t.Fatal(err)
			}
			r, err := d.Lookup(context.Background(), tc.email)
			if r.Answer != tc.answer {
				t.Fatalf("answer %q, want %q (err %v)", r.Answer, tc.answer, err)
			}
			if tc.why == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUndecided) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("error %v, want one wrapping ErrUndecided that says %q", err, tc.why)
			}
		})
	}
}
