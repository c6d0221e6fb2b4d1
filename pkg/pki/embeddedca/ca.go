// Package embeddedca is sealgate's default certificate authority: smallstep's
// `certificates` authority running in-process with a root and an issuing CA
// created under data_dir by `sealgate pki init`.
//
// Key protection: both CA private keys are stored as PKCS#8 sealed with the
// master keyring (AES-256-GCM, see pkg/secret), the same envelope that
// protects user keys, so there is one secret to guard (pki.master_key_file)
// rather than a second CA password to distribute. The additional data binds
// each sealed blob to its role, so the root key file cannot be swapped for
// the issuing key file.
//
// Revocation: smallstep's authority needs its own database for revocation
// and CRLs. sealgate keeps the revoked list in a small JSON file next to the
// CA and signs the CRL with the issuing key itself (crl.der), which `serve`
// publishes through Handler.
package embeddedca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"

	"github.com/sealgate/sealgate/pkg/pki"
)

// Sealer encrypts CA keys at rest; *secret.Keyring satisfies it.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// File names under the CA directory.
const (
	rootCertFile     = "root.crt"
	rootKeyFile      = "root.key.sealed"
	issuingCertFile  = "issuing.crt"
	issuingKeyFile   = "issuing.key.sealed"
	revokedFile      = "revoked.json"
	crlFile          = "crl.der"
	aadRootKey       = "sealgate/embeddedca/root-key"
	aadIssuingKey    = "sealgate/embeddedca/issuing-key"
	rootValidity     = 20 * 365 * 24 * time.Hour
	issuingValidity  = 10 * 365 * 24 * time.Hour
	defaultCRLPeriod = 7 * 24 * time.Hour
)

// InitOptions shape a new CA; zero values give the defaults.
type InitOptions struct {
	// Name is the organisation name in the CA subjects ("sealgate").
	Name string
	// KeyBits is the RSA size of both CA keys (default 3072). RSA because
	// gpgsm 2.2 and older Outlook builds do not verify ECDSA chains.
	KeyBits int
}

// Init creates the root and issuing CA under dir if they are absent. It is
// idempotent: an existing CA is left alone and created reports false. A
// half-created CA (root without issuing CA, e.g. after a crash) is completed.
func Init(dir string, sealer Sealer, opts InitOptions) (created bool, err error) {
	if opts.Name == "" {
		opts.Name = "sealgate"
	}
	if opts.KeyBits == 0 {
		opts.KeyBits = 3072
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("creating CA directory: %w", err)
	}
	if exists(filepath.Join(dir, issuingCertFile)) && exists(filepath.Join(dir, rootCertFile)) {
		return false, nil
	}
	var root *x509.Certificate
	var rootKey crypto.Signer
	if exists(filepath.Join(dir, rootCertFile)) {
		root, rootKey, err = loadPair(dir, rootCertFile, rootKeyFile, aadRootKey, sealer)
		if err != nil {
			return false, err
		}
	} else {
		rootKey, err = rsa.GenerateKey(rand.Reader, opts.KeyBits)
		if err != nil {
			return false, fmt.Errorf("generating root key: %w", err)
		}
		tmpl := caTemplate(pkix.Name{Organization: []string{opts.Name}, CommonName: opts.Name + " S/MIME Root CA"}, rootValidity, 1, rootKey.Public())
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rootKey.Public(), rootKey)
		if err != nil {
			return false, fmt.Errorf("signing root certificate: %w", err)
		}
		root, _ = x509.ParseCertificate(der)
		// Key first: a certificate without its key would be useless.
		if err := writeSealedKey(dir, rootKeyFile, aadRootKey, rootKey, sealer); err != nil {
			return false, err
		}
		if err := writeFileAtomic(filepath.Join(dir, rootCertFile), pemCert(root), 0o644); err != nil {
			return false, err
		}
	}
	issKey, err := rsa.GenerateKey(rand.Reader, opts.KeyBits)
	if err != nil {
		return false, fmt.Errorf("generating issuing CA key: %w", err)
	}
	tmpl := caTemplate(pkix.Name{Organization: []string{opts.Name}, CommonName: opts.Name + " S/MIME Issuing CA"}, issuingValidity, 0, issKey.Public())
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, issKey.Public(), rootKey)
	if err != nil {
		return false, fmt.Errorf("signing issuing CA certificate: %w", err)
	}
	iss, _ := x509.ParseCertificate(der)
	if err := writeSealedKey(dir, issuingKeyFile, aadIssuingKey, issKey, sealer); err != nil {
		return false, err
	}
	if err := writeFileAtomic(filepath.Join(dir, issuingCertFile), pemCert(iss), 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// Exists reports whether dir holds an initialised CA.
func Exists(dir string) bool {
	return exists(filepath.Join(dir, issuingCertFile)) && exists(filepath.Join(dir, rootCertFile))
}

func caTemplate(name pkix.Name, validity time.Duration, maxPath int, pub crypto.PublicKey) *x509.Certificate {
	now := time.Now().UTC()
	return &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               name,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            maxPath,
		MaxPathLenZero:        maxPath == 0,
		SubjectKeyId:          subjectKeyID(pub),
	}
}

// CA is an opened embedded CA ready to issue.
type CA struct {
	dir     string
	root    *x509.Certificate
	issuing *x509.Certificate
	signer  crypto.Signer
	auth    *authority.Authority
	crlURL  string
	now     func() time.Time
}

// Options for Open.
type Options struct {
	// CRLURL goes into every certificate's CRL distribution point, e.g.
	// "http://sealgate.example.org:8080/crl" (empty: no distribution point).
	CRLURL string
	// Now is the clock for CRL dates and the refresh decision; nil is
	// time.Now (tests move it forward).
	Now func() time.Time
}

// Open loads the CA from dir, unseals the issuing key and starts the
// smallstep authority in-process.
func Open(dir string, sealer Sealer, opts Options) (*CA, error) {
	if !Exists(dir) {
		return nil, fmt.Errorf("no CA in %s: run `sealgate pki init` first", dir)
	}
	root, err := readCert(filepath.Join(dir, rootCertFile))
	if err != nil {
		return nil, err
	}
	iss, signer, err := loadPair(dir, issuingCertFile, issuingKeyFile, aadIssuingKey, sealer)
	if err != nil {
		return nil, err
	}
	auth, err := authority.NewEmbedded(
		authority.WithX509RootCerts(root),
		authority.WithX509Signer(iss, signer),
		authority.WithQuietInit(),
	)
	if err != nil {
		return nil, fmt.Errorf("starting embedded smallstep authority: %w", err)
	}
	ca := &CA{dir: dir, root: root, issuing: iss, signer: signer, auth: auth, crlURL: opts.CRLURL, now: opts.Now}
	if ca.now == nil {
		ca.now = time.Now
	}
	if !exists(filepath.Join(dir, crlFile)) {
		if err := ca.RefreshCRL(); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// Issue signs an S/MIME certificate through the smallstep authority. The
// profile is fixed here rather than in a template so that it cannot drift:
// email SANs only, EKU emailProtection, key usage by key type, CRL DP.
func (c *CA) Issue(ctx context.Context, req pki.IssueRequest) (pki.Issued, error) {
	if req.CSR == nil || len(req.Emails) == 0 {
		return pki.Issued{}, errors.New("issue request needs a CSR and at least one email address")
	}
	// The authority checks the CSR's signature itself (signX509).
	validity := req.Validity
	if validity <= 0 {
		validity = 365 * 24 * time.Hour
	}
	profile := provisioner.CertificateModifierFunc(func(crt *x509.Certificate, _ provisioner.SignOptions) error {
		now := time.Now().UTC()
		cn := req.Name
		if cn == "" {
			cn = req.Emails[0]
		}
		crt.Subject = pkix.Name{CommonName: cn, ExtraNames: []pkix.AttributeTypeAndValue{
			// PKCS#9 emailAddress is an IA5String; older clients still look for it in the subject.
			{Type: oidEmailAddress, Value: asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(req.Emails[0])}},
		}}
		crt.EmailAddresses = append([]string(nil), req.Emails...)
		crt.DNSNames, crt.IPAddresses, crt.URIs = nil, nil, nil
		crt.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
		crt.UnknownExtKeyUsage = nil
		switch req.CSR.PublicKey.(type) {
		case *rsa.PublicKey:
			crt.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		case *ecdsa.PublicKey:
			crt.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement
		default:
			return fmt.Errorf("unsupported public key type %T", req.CSR.PublicKey)
		}
		crt.BasicConstraintsValid, crt.IsCA = true, false
		crt.NotBefore = now.Add(-time.Minute)
		crt.NotAfter = now.Add(validity)
		if crt.NotAfter.After(c.issuing.NotAfter) {
			crt.NotAfter = c.issuing.NotAfter
		}
		crt.SubjectKeyId = subjectKeyID(req.CSR.PublicKey)
		if c.crlURL != "" {
			crt.CRLDistributionPoints = []string{c.crlURL}
		}
		return nil
	})
	chain, err := c.auth.SignWithContext(ctx, req.CSR, provisioner.SignOptions{}, profile)
	if err != nil {
		return pki.Issued{}, fmt.Errorf("embedded CA: %w", err)
	}
	if len(chain) == 0 {
		return pki.Issued{}, errors.New("embedded CA returned no certificate")
	}
	return pki.Issued{Leaf: chain[0], Chain: chain[1:]}, nil
}

var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// Roots returns the root certificate.
func (c *CA) Roots(context.Context) ([]*x509.Certificate, error) {
	return []*x509.Certificate{c.root}, nil
}

// Intermediates returns the issuing CA certificate.
func (c *CA) Intermediates(context.Context) ([]*x509.Certificate, error) {
	return []*x509.Certificate{c.issuing}, nil
}

// Root and IssuingCert give direct access for the CLI.
func (c *CA) Root() *x509.Certificate        { return c.root }
func (c *CA) IssuingCert() *x509.Certificate { return c.issuing }

func loadPair(dir, certName, keyName, aad string, sealer Sealer) (*x509.Certificate, crypto.Signer, error) {
	cert, err := readCert(filepath.Join(dir, certName))
	if err != nil {
		return nil, nil, err
	}
	sealed, err := os.ReadFile(filepath.Join(dir, keyName))
	if err != nil {
		return nil, nil, fmt.Errorf("reading CA key: %w", err)
	}
	der, err := sealer.Open(sealed, []byte(aad))
	if err != nil {
		return nil, nil, fmt.Errorf("unsealing %s (wrong master key?): %w", keyName, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", keyName, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s is not a signing key", keyName)
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match %s", keyName, certName)
	}
	return cert, signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func writeSealedKey(dir, name, aad string, key crypto.Signer, sealer Sealer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding CA key: %w", err)
	}
	sealed, err := sealer.Seal(der, []byte(aad))
	if err != nil {
		return fmt.Errorf("sealing CA key: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, name), sealed, 0o600)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return c, nil
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// writeFileAtomic writes via a temporary file, fsync and rename so a crash
// leaves either the old or the new content, never half a key.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// The rename is durable only once the directory is synced.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("syncing the directory of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing the directory of %s: %w", path, err)
	}
	return nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

// subjectKeyID is the RFC 5280 method 1 key identifier (SHA-1 of the
// subjectPublicKey bits). CMS recipients may be addressed by it.
func subjectKeyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	var spki struct {
		Alg asn1.RawValue
		Key asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil
	}
	sum := sha1.Sum(spki.Key.Bytes)
	return sum[:]
}

var _ pki.Issuer = (*CA)(nil)
