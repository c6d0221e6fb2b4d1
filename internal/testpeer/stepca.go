package testpeer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/ca"
	"github.com/smallstep/certificates/db"
	"go.step.sm/crypto/jose"
)

// StepCA is a real step-ca (smallstep's own server code) on loopback.
type StepCA struct {
	URL         string
	RootFile    string
	Provisioner string
	Password    []byte
	Root        *x509.Certificate
	Issuing     *x509.Certificate
	srv         *ca.CA
	addr        string
	stopOnce    sync.Once
}

// StartStepCA runs step-ca with a bbolt database (revocation and CRL need
// one), CRL generation on revoke, and one JWK provisioner with the given
// X.509 template and maximum lifetime. It stops when the test ends.
func StartStepCA(t testing.TB, template string, maxLifetime time.Duration) *StepCA {
	t.Helper()
	dir := t.TempDir()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := selfCA(t, "Test step-ca Root", rootKey, nil, nil)
	intKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	inter := selfCA(t, "Test step-ca Intermediate", intKey, root, rootKey)
	writePEMFile(t, filepath.Join(dir, "root.crt"), "CERTIFICATE", root.Raw)
	writePEMFile(t, filepath.Join(dir, "int.crt"), "CERTIFICATE", inter.Raw)
	k8, _ := x509.MarshalPKCS8PrivateKey(intKey)
	writePEMFile(t, filepath.Join(dir, "int.key"), "PRIVATE KEY", k8)

	password := []byte("provisioner-password")
	jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := jose.EncryptJWK(jwk, password)
	if err != nil {
		t.Fatal(err)
	}
	encKey, err := enc.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	pub := jwk.Public()
	prov := &provisioner.JWK{
		Type: "JWK", Name: "sealgate", Key: &pub, EncryptedKey: encKey,
		Claims: &provisioner.Claims{
			MaxTLSDur:     &provisioner.Duration{Duration: maxLifetime},
			DefaultTLSDur: &provisioner.Duration{Duration: maxLifetime},
		},
		Options: &provisioner.Options{X509: &provisioner.X509Options{Template: template}},
	}
	// step-ca listens on the address in its config and cannot report a
	// port it chose: a picked port taken before it binds is retried.
	var (
		addr string
		srv  *ca.CA
	)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	err = OnFreePort(func(port int) error {
		addr = fmt.Sprintf("127.0.0.1:%d", port)
		cfg := &config.Config{
			Root:             []string{filepath.Join(dir, "root.crt")},
			IntermediateCert: filepath.Join(dir, "int.crt"),
			IntermediateKey:  filepath.Join(dir, "int.key"),
			Address:          addr,
			DNSNames:         []string{"127.0.0.1"},
			DB:               &db.Config{Type: "bbolt", DataSource: filepath.Join(dir, "db")},
			AuthorityConfig:  &config.AuthConfig{Provisioners: provisioner.List{prov}},
			CRL:              &config.CRLConfig{Enabled: true, GenerateOnRevoke: true},
		}
		if srv, err = ca.New(cfg, ca.WithQuiet(true)); err != nil {
			return fmt.Errorf("starting step-ca: %w", err)
		}
		runErr := make(chan error, 1)
		go func() { runErr <- srv.Run() }()
		if err := waitStepCA(addr, roots, runErr); err != nil {
			if !errors.Is(err, errStepCAEnded) { // Run stops the CA itself when it fails
				_ = srv.Stop()
			}
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &StepCA{URL: "https://" + addr, RootFile: filepath.Join(dir, "root.crt"), Provisioner: "sealgate",
		Password: password, Root: root, Issuing: inter, srv: srv, addr: addr}
	t.Cleanup(s.Stop)
	return s
}

// errStepCAEnded: the CA's Run returned (it then stopped itself, database
// closed) before the CA answered.
var errStepCAEnded = errors.New("step-ca stopped during start-up")

// waitStepCA waits until the CA answers /health over TLS with a chain to
// roots (so a server that took the port cannot pass for it), or Run fails.
func waitStepCA(addr string, roots *x509.CertPool, runErr <-chan error) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-runErr:
			return fmt.Errorf("%w on %s: %w", errStepCAEnded, addr, err)
		default:
		}
		if resp, err := client.Get("https://" + addr + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("step-ca does not answer on %s", addr)
}

// Stop takes the CA down (a CA that is down mid-rollout); safe to call twice.
func (s *StepCA) Stop() { s.stopOnce.Do(func() { _ = s.srv.Stop() }) }

func selfCA(t testing.TB, cn string, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func writePEMFile(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(fmt.Errorf("writing %s: %w", path, err))
	}
}
