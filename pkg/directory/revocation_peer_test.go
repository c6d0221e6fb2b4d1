package directory

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// opensslRevocation is a CA whose CRLs (`openssl ca -gencrl`) and OCSP
// answers (`openssl ocsp -index`) are made by openssl and served over
// HTTP, each document under its own path.
type opensslRevocation struct {
	ca   *testCA
	dir  string
	docs *docServer
}

// docServer serves documents by URL path over HTTP.
type docServer struct {
	*httptest.Server
	mu   sync.Mutex
	docs map[string][]byte
}

func newDocServer(t *testing.T) *docServer {
	s := &docServer{docs: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		doc, ok := s.docs[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *docServer) set(path string, doc []byte) {
	s.mu.Lock()
	s.docs[path] = doc
	s.mu.Unlock()
}

func newOpensslRevocation(t *testing.T) *opensslRevocation {
	t.Helper()
	testpeer.Require(t, "openssl")
	o := &opensslRevocation{ca: newTestCA(t, "OpenSSL Revocation Root", false), dir: t.TempDir(), docs: newDocServer(t)}
	writeFile(t, o.dir, "ca.pem", certPEM(o.ca.cert))
	writeFile(t, o.dir, "ca.key", keyPEM(t, o.ca.key))
	return o
}

func keyPEM(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func (o *opensslRevocation) url(path string) string { return o.docs.URL + path }

// writeIndex writes the `openssl ca` database: every certificate valid
// (V) except revoked (R).
func (o *opensslRevocation) writeIndex(t *testing.T, valid, revoked []*x509.Certificate) string {
	t.Helper()
	var b strings.Builder
	line := func(state string, c *x509.Certificate, revokedAt string) {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%X\tunknown\t/CN=%s\n", state, c.NotAfter.UTC().Format("060102150405Z"), revokedAt, c.SerialNumber, c.Subject.CommonName)
	}
	for _, c := range valid {
		line("V", c, "")
	}
	for _, c := range revoked {
		line("R", c, time.Now().Add(-time.Hour).UTC().Format("060102150405Z"))
	}
	return writeFile(t, o.dir, "index.txt", []byte(b.String()))
}

// crl serves at path a CRL made by `openssl ca -gencrl -md md`.
func (o *opensslRevocation) crl(t *testing.T, path, md string) {
	t.Helper()
	conf := writeFile(t, o.dir, "ca.cnf", []byte(fmt.Sprintf("[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ncrlnumber = %s\ncertificate = %s\nprivate_key = %s\ndefault_md = sha256\n",
		filepath.Join(o.dir, "index.txt"), writeFile(t, o.dir, "crlnumber", []byte("01\n")), filepath.Join(o.dir, "ca.pem"), filepath.Join(o.dir, "ca.key"))))
	out := filepath.Join(o.dir, "crl.pem")
	testpeer.MustRun(t, nil, "openssl", "ca", "-gencrl", "-config", conf, "-md", md, "-crldays", "1", "-out", out)
	o.docs.set(path, readFile(t, out))
}

// ocsp serves at path the answer of `openssl ocsp -index` for leaf,
// signed by signer (cert and key PEM files) with digest md; extra
// arguments go to openssl (say "-nmin", "300"). Without -nmin/-ndays
// openssl sets no nextUpdate.
func (o *opensslRevocation) ocsp(t *testing.T, path string, leaf *x509.Certificate, signerCert, signerKey, md string, extra ...string) {
	t.Helper()
	req, err := ocsp.CreateRequest(leaf, o.ca.cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	reqFile := writeFile(t, o.dir, "req.der", req)
	respFile := filepath.Join(o.dir, "resp.der")
	args := append([]string{"ocsp", "-index", filepath.Join(o.dir, "index.txt"), "-CA", filepath.Join(o.dir, "ca.pem"),
		"-rsigner", signerCert, "-rkey", signerKey, "-reqin", reqFile, "-respout", respFile, "-rmd", md}, extra...)
	testpeer.MustRun(t, nil, "openssl", args...)
	o.docs.set(path, readFile(t, respFile))
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// crlWithoutNextUpdate is a CRL as a careless CA might publish it: no
// nextUpdate (RFC 5280 requires one; openssl always sets it, Go's
// CreateRevocationList too, so it is put together by hand).
func crlWithoutNextUpdate(t *testing.T, ca *testCA, thisUpdate time.Time) []byte {
	t.Helper()
	alg := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}} // ecdsa-with-SHA256
	tbs, err := asn1.Marshal(struct {
		Version    int
		Signature  pkix.AlgorithmIdentifier
		Issuer     asn1.RawValue
		ThisUpdate time.Time `asn1:"utc"`
	}{1, alg, asn1.RawValue{FullBytes: ca.cert.RawSubject}, thisUpdate.UTC().Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(tbs)
	sig, err := ca.key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, alg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestRevocationAnswersFromOpenSSL plays a responder or CRL publisher
// that should not be believed: answers signed with SHA-1 (which the
// x/crypto OCSP parser and x509's CRL check verify like any other), a
// "good" signed by an ordinary mail certificate of the same CA (no
// id-kp-OCSPSigning: anyone with a certificate from that CA could vouch
// for a revoked one), and answers without nextUpdate replayed long after
// they were made (taken literally, good forever). Under hard-fail each
// must leave the certificate unusable for now: undecided, not valid.
func TestRevocationAnswersFromOpenSSL(t *testing.T) {
	o := newOpensslRevocation(t)
	ca := o.ca
	leaf := func(name string, s leafSpec) *x509.Certificate {
		s.emails = []string{name + "@example.test"}
		return ca.issue(t, s)
	}
	crlGood := leaf("crl-good", leafSpec{crlURL: o.url("/sha256.crl")})
	crlRevoked := leaf("crl-revoked", leafSpec{crlURL: o.url("/sha256.crl")})
	crlSHA1 := leaf("crl-sha1", leafSpec{crlURL: o.url("/sha1.crl")})
	crlNoNext := leaf("crl-nonext", leafSpec{crlURL: o.url("/nonext.crl")})
	ocspGood := leaf("ocsp-good", leafSpec{ocspURL: o.url("/good")})
	ocspLong := leaf("ocsp-long", leafSpec{ocspURL: o.url("/long")})
	ocspRevoked := leaf("ocsp-revoked", leafSpec{ocspURL: o.url("/revoked")})
	ocspSHA1 := leaf("ocsp-sha1", leafSpec{ocspURL: o.url("/sha1")})
	ocspMallory := leaf("ocsp-mallory", leafSpec{ocspURL: o.url("/mallory")})
	ocspDelegated := leaf("ocsp-delegated", leafSpec{ocspURL: o.url("/delegated")})
	mallory := leaf("mallory", leafSpec{noCRL: true})
	responder := leaf("responder", leafSpec{noCRL: true, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, keyUsage: x509.KeyUsageDigitalSignature})
	// The leaves share one RSA key (testLeafKey); mallory and the
	// responder sign with it.
	leafKeyFile := writeFile(t, o.dir, "leaf.key", keyPEM(t, testLeafKey(t)))
	malloryFile := writeFile(t, o.dir, "mallory.pem", certPEM(mallory))
	responderFile := writeFile(t, o.dir, "responder.pem", certPEM(responder))
	caCert, caKey := filepath.Join(o.dir, "ca.pem"), filepath.Join(o.dir, "ca.key")

	o.writeIndex(t, []*x509.Certificate{crlGood, crlSHA1, ocspGood, ocspLong, ocspSHA1, ocspMallory, ocspDelegated}, []*x509.Certificate{crlRevoked, ocspRevoked})
	o.crl(t, "/sha256.crl", "sha256")
	o.crl(t, "/sha1.crl", "sha1")
	o.docs.set("/nonext.crl", crlWithoutNextUpdate(t, ca, time.Now().Add(-time.Minute)))
	o.ocsp(t, "/good", ocspGood, caCert, caKey, "sha256")
	o.ocsp(t, "/long", ocspLong, caCert, caKey, "sha256", "-nmin", "300")
	o.ocsp(t, "/revoked", ocspRevoked, caCert, caKey, "sha256")
	o.ocsp(t, "/sha1", ocspSHA1, caCert, caKey, "sha1")
	o.ocsp(t, "/mallory", ocspMallory, malloryFile, leafKeyFile, "sha256")
	o.ocsp(t, "/delegated", ocspDelegated, responderFile, leafKeyFile, "sha256")

	tests := []revocationWant{
		{name: "CRL sha256, good", cert: crlGood, valid: true, detail: "not revoked (CRL"},
		{name: "CRL sha256, revoked", cert: crlRevoked, detail: "revoked at"},
		{name: "CRL signed with SHA-1", cert: crlSHA1, undecided: true, detail: "CRL is signed with ECDSA-SHA1: refused"},
		{name: "CRL without nextUpdate, fresh", cert: crlNoNext, valid: true, detail: "not revoked (CRL"},
		{name: "CRL without nextUpdate, 2 h later", cert: crlNoNext, later: 2 * time.Hour, undecided: true, detail: "CRL is stale: no nextUpdate"},
		{name: "OCSP without nextUpdate, fresh", cert: ocspGood, valid: true, detail: "not revoked (OCSP"},
		{name: "OCSP without nextUpdate, 2 h later", cert: ocspGood, later: 2 * time.Hour, undecided: true, detail: "OCSP response is stale: no nextUpdate"},
		{name: "OCSP with nextUpdate in 5 h, 2 h later", cert: ocspLong, later: 2 * time.Hour, valid: true, detail: "not revoked (OCSP"},
		{name: "OCSP revoked", cert: ocspRevoked, detail: "revoked at"},
		{name: "OCSP signed with SHA-1", cert: ocspSHA1, undecided: true, detail: "OCSP response is signed with ECDSA-SHA1: refused"},
		{name: "OCSP good signed by a mail certificate of the CA", cert: ocspMallory, undecided: true, detail: "lacks the OCSPSigning extended key usage"},
		{name: "OCSP good signed by a delegated responder", cert: ocspDelegated, valid: true, detail: "not revoked (OCSP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, ca.cert) })
	}
}

// revocationWant is what a hard-failing validator must conclude about one
// certificate's revocation.
type revocationWant struct {
	name      string
	cert      *x509.Certificate
	later     time.Duration // how long after the answers were made the lookup runs
	valid     bool
	undecided bool
	detail    string // in the revocation check's detail
}

func (w revocationWant) check(t *testing.T, root *x509.Certificate) {
	t.Helper()
	at := time.Now().Add(w.later)
	v, err := NewValidator(ValidatorOptions{Roots: poolOf(root), Revocation: RevocationHardFail, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	ev := v.Evaluate(t.Context(), Candidate{Certificate: w.cert}, w.cert.EmailAddresses[0])
	var rc Check
	for _, c := range ev.Checks {
		if c.Name == CheckRevocation {
			rc = c
		}
	}
	if ev.Valid != w.valid || ev.Undecided != w.undecided || rc.Undecided != w.undecided || !strings.Contains(rc.Detail, w.detail) {
		t.Fatalf("valid=%v undecided=%v revocation %+v; want valid=%v undecided=%v and %q",
			ev.Valid, ev.Undecided, rc, w.valid, w.undecided, w.detail)
	}
}

// TestCRLScope plays an attacker on the plain-HTTP path to the CRL who
// serves another genuine, current CRL of the same CA, one that does not
// list the revoked certificate: a delta CRL, a partition for another
// distribution point, one for CA certificates only. None may say "not
// revoked".
func TestCRLScope(t *testing.T) {
	ca := newTestCA(t, "Partitioned Root", false)
	srv := newDocServer(t)
	mustMarshal := func(v any) []byte {
		der, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	idpFor := func(url string) []byte {
		uri := mustMarshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(url)})
		fullName := mustMarshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: uri})
		return mustMarshal(struct{ DP asn1.RawValue }{asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: fullName}})
	}
	onlyCA := mustMarshal(struct {
		OnlyCA bool `asn1:"tag:2"`
	}{true})
	tests := []struct {
		name  string
		ext   func(url string) []pkix.Extension
		valid bool
		want  string
	}{
		{name: "control: complete CRL", ext: func(string) []pkix.Extension { return nil }, valid: true, want: "not revoked (CRL"},
		{name: "control: partition for this distribution point", valid: true, want: "not revoked (CRL",
			ext: func(url string) []pkix.Extension {
				return []pkix.Extension{{Id: oidIssuingDistributionPoint, Critical: true, Value: idpFor(url)}}
			}},
		{name: "delta CRL", want: "a delta CRL",
			ext: func(string) []pkix.Extension {
				return []pkix.Extension{{Id: oidDeltaCRLIndicator, Critical: true, Value: mustMarshal(1)}}
			}},
		{name: "partition for another distribution point", want: "for another distribution point",
			ext: func(url string) []pkix.Extension {
				return []pkix.Extension{{Id: oidIssuingDistributionPoint, Critical: true, Value: idpFor(url + "-other")}}
			}},
		{name: "CA certificates only", want: "covers another kind of certificate",
			ext: func(string) []pkix.Extension {
				return []pkix.Extension{{Id: oidIssuingDistributionPoint, Critical: true, Value: onlyCA}}
			}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := fmt.Sprintf("/%d.crl", i)
			leaf := ca.issue(t, leafSpec{emails: []string{"p@example.test"}, crlURL: srv.URL + path})
			der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(int64(i + 1)),
				ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour), ExtraExtensions: tc.ext(srv.URL + path)}, ca.cert, ca.key)
			if err != nil {
				t.Fatal(err)
			}
			srv.set(path, der)
			v, err := NewValidator(ValidatorOptions{Roots: poolOf(ca.cert), Revocation: RevocationHardFail})
			if err != nil {
				t.Fatal(err)
			}
			ev := v.Evaluate(t.Context(), Candidate{Certificate: leaf}, "p@example.test")
			if d := checkDetail(ev, CheckRevocation); ev.Valid != tc.valid || ev.Undecided == tc.valid || !strings.Contains(d, tc.want) {
				t.Fatalf("valid=%v undecided=%v revocation %q; want valid=%v and %q", ev.Valid, ev.Undecided, d, tc.valid, tc.want)
			}
		})
	}
}
