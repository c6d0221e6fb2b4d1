package directory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
)

// TestKeyserverLDAPSFromConfig: a keyserver reached over ldaps:// with
// its own CA (keyservers.ca_file), wired from a config file the way the
// gateway does; trust.ca_files anchors the recipient certificates.
func TestKeyserverLDAPSFromConfig(t *testing.T) {
	testpeer.Require(t, "slapd")
	dir := t.TempDir()
	tlsCA := newTestCA(t, "LDAP TLS CA", false)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}, tlsCA.cert, key.Public(), tlsCA.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile := writeFile(t, dir, "server.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyFile := writeFile(t, dir, "server.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	tlsCAFile := writeFile(t, dir, "ldap-ca.pem", certPEM(tlsCA.cert))

	mailCA := newTestCA(t, "Mail CA", true)
	good := mailCA.issue(t, leafSpec{emails: []string{"tls@example.test"}})
	mailCAFile := writeFile(t, dir, "mail-ca.pem", certPEM(mailCA.cert))
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{TLSCertFile: certFile, TLSKeyFile: keyFile,
		LDIF: entriesLDIF([]ldapEntry{{uid: "tls", mail: "tls@example.test", certs: []*x509.Certificate{good}}})})
	if slapd.LDAPSURL == "" {
		t.Fatal("slapd has no ldaps URL")
	}

	toml := fmt.Sprintf(`data_dir = %q
[relay]
mode = "dir"
dir = %q
[[keyservers]]
name = "secure"
url = %q
base_dn = "dc=example,dc=test"
ca_file = %q
[trust]
ca_files = [%q]
system_roots = false
revocation = "hard-fail"
`, filepath.Join(dir, "data"), filepath.Join(dir, "out"), slapd.LDAPSURL, tlsCAFile, mailCAFile)
	cfg, err := config.Parse([]byte(toml), filepath.Join(dir, "sealgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewFromConfig(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := d.Lookup(context.Background(), "tls@example.test")
	if err != nil || !r.Found || !r.Certificate().Equal(good) || r.Chosen.Source != "keyserver secure" {
		t.Fatalf("ldaps lookup: %+v %v", r, err)
	}

	// Without the TLS anchor the server is not trusted: unavailable.
	cfg.Keyservers[0].CAFile = ""
	d2, err := NewFromConfig(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if r, _ := d2.Lookup(context.Background(), "tls@example.test"); r.Answer != AnswerUnavailable {
		t.Fatalf("untrusted ldaps server: %+v", r)
	}
}
