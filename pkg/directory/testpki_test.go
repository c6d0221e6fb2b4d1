package directory

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCA is a CA made for a test, publishing its CRL over HTTP.
type testCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	crlURL  string
	mu      sync.Mutex
	revoked []x509.RevocationListEntry
	serial  atomic.Int64
}

// One RSA key for all test leaves: generating RSA keys dominates test time
// and nothing here depends on keys being distinct.
var (
	leafKeyOnce sync.Once
	leafKey     *rsa.PrivateKey
	smallKey    *rsa.PrivateKey
)

func testLeafKey(t testing.TB) *rsa.PrivateKey {
	leafKeyOnce.Do(func() {
		var err error
		if leafKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if smallKey, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			panic(err)
		}
	})
	return leafKey
}

// newTestCA creates a self-signed root; when withCRL, an httptest server
// serves its CRL at crlURL (the leaves point there).
func newTestCA(t testing.TB, name string, withCRL bool) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"sealgate tests"}},
		NotBefore:             time.Now().Add(-48 * time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key}
	ca.serial.Store(100)
	if withCRL {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/pkix-crl")
			_, _ = w.Write(ca.crl(t))
		}))
		t.Cleanup(srv.Close)
		ca.crlURL = srv.URL + "/ca.crl"
	}
	return ca
}

func (ca *testCA) crl(t testing.TB) []byte {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(time.Now().UnixNano()),
		ThisUpdate:                time.Now().Add(-time.Minute),
		NextUpdate:                time.Now().Add(time.Hour),
		RevokedCertificateEntries: ca.revoked,
	}, ca.cert, ca.key)
	if err != nil {
		t.Error(err)
	}
	return der
}

func (ca *testCA) revoke(c *x509.Certificate) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.revoked = append(ca.revoked, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute), ReasonCode: 1})
}

// leafSpec describes a test end-entity certificate.
type leafSpec struct {
	emails    []string
	notBefore time.Time
	notAfter  time.Time
	eku       []x509.ExtKeyUsage
	keyUsage  x509.KeyUsage
	weakKey   bool
	ocspURL   string // OCSP responder to name
	aiaURL    string // caIssuers URL to name
	noCRL     bool   // name no CRL distribution point
	crlURL    string // CRL distribution point to name instead of the CA's
	// subjectEmail is put in the subject as PKCS #9 emailAddress (as a
	// UTF8String when not ASCII); emails may then be empty.
	subjectEmail string
	// serial is the serial number when it must be known before issuing
	// (an OCSP responder's index); 0 = the CA's next.
	serial int64
}

func (ca *testCA) issue(t testing.TB, s leafSpec) *x509.Certificate {
	t.Helper()
	key := testLeafKey(t)
	if s.weakKey {
		key = smallKey
	}
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	if s.eku == nil {
		s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	}
	if s.keyUsage == 0 {
		s.keyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	cn := s.subjectEmail
	if len(s.emails) > 0 {
		cn = s.emails[0]
	}
	serial := s.serial
	if serial == 0 {
		serial = ca.serial.Add(1)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(serial),
		Subject:        pkix.Name{CommonName: cn},
		NotBefore:      s.notBefore,
		NotAfter:       s.notAfter,
		EmailAddresses: s.emails,
		ExtKeyUsage:    s.eku,
		KeyUsage:       s.keyUsage,
	}
	if ca.crlURL != "" && !s.noCRL {
		tmpl.CRLDistributionPoints = []string{ca.crlURL}
	}
	if s.crlURL != "" {
		tmpl.CRLDistributionPoints = []string{s.crlURL}
	}
	if s.subjectEmail != "" {
		tmpl.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidEmailAddress, Value: s.subjectEmail}}
	}
	if s.ocspURL != "" {
		tmpl.OCSPServer = []string{s.ocspURL}
	}
	if s.aiaURL != "" {
		tmpl.IssuingCertificateURL = []string{s.aiaURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// subCA makes an intermediate CA under ca (no CRL of its own).
func (ca *testCA) subCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(ca.serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-24 * time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if ca.crlURL != "" {
		tmpl.CRLDistributionPoints = []string{ca.crlURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	sub := &testCA{cert: cert, key: key}
	sub.serial.Store(1000)
	return sub
}
