package testpeer

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// PKI is a throwaway certificate hierarchy made by openssl: a root CA, an
// intermediate CA, and end-entity certificates issued by the intermediate.
// Made by a peer rather than by our code, so that our S/MIME code is
// tested against certificates it did not shape.
type PKI struct {
	Dir         string
	RootFile    string // PEM root certificate
	InterFile   string // PEM intermediate certificate
	ChainFile   string // PEM intermediate + root
	Root, Inter *x509.Certificate
	rootKey     string
	interKey    string
	serial      atomic.Int64
}

// Identity is an end-entity certificate with its key in every form the
// peers want.
type Identity struct {
	Email    string
	CertFile string // PEM leaf
	KeyFile  string // PEM PKCS#8 key, unencrypted
	// P12File is PKCS#12 with 3DES/SHA-1 (readable by gpgsm and NSS),
	// containing key, leaf, intermediate and root; password P12Password.
	P12File     string
	P12Password string
	Cert        *x509.Certificate
	Key         crypto.Signer
}

// IssueOptions choose the key and usage of an end-entity certificate.
type IssueOptions struct {
	// KeyType: rsa2048 (default), rsa3072, p256, p384.
	KeyType string
	// EKU defaults to emailProtection.
	EKU string
	// Days of validity, default 365.
	Days int
}

// NewPKI creates root and intermediate CAs with openssl in a temp dir.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	Require(t, "openssl")
	dir := t.TempDir()
	p := &PKI{Dir: dir}
	p.serial.Store(1000)
	p.rootKey = filepath.Join(dir, "root.key")
	p.RootFile = filepath.Join(dir, "root.pem")
	MustRun(t, nil, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p.rootKey,
		"-out", p.RootFile, "-days", "3650", "-subj", "/O=sealgate test/CN=sealgate Test Root CA",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
		"-addext", "subjectKeyIdentifier=hash")
	p.interKey = filepath.Join(dir, "inter.key")
	p.InterFile = filepath.Join(dir, "inter.pem")
	csr := filepath.Join(dir, "inter.csr")
	MustRun(t, nil, "openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", p.interKey,
		"-out", csr, "-subj", "/O=sealgate test/CN=sealgate Test Mail CA")
	ext := writeFile(t, dir, "inter.ext", "basicConstraints=critical,CA:TRUE,pathlen:0\n"+
		"keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
	MustRun(t, nil, "openssl", "x509", "-req", "-in", csr, "-CA", p.RootFile, "-CAkey", p.rootKey,
		"-set_serial", "2", "-days", "3000", "-extfile", ext, "-out", p.InterFile)
	p.Root = ReadCert(t, p.RootFile)
	p.Inter = ReadCert(t, p.InterFile)
	p.ChainFile = writeFile(t, dir, "chain.pem", string(pemCert(p.Inter))+string(pemCert(p.Root)))
	return p
}

// Issue makes an end-entity certificate for email, signed by the
// intermediate CA.
func (p *PKI) Issue(t testing.TB, email string, opts IssueOptions) *Identity {
	t.Helper()
	if opts.KeyType == "" {
		opts.KeyType = "rsa2048"
	}
	if opts.EKU == "" {
		opts.EKU = "emailProtection"
	}
	if opts.Days == 0 {
		opts.Days = 365
	}
	n := p.serial.Add(1)
	base := filepath.Join(p.Dir, fmt.Sprintf("%d-%s", n, strings.NewReplacer("@", "_at_").Replace(email)))
	id := &Identity{Email: email, KeyFile: base + ".key", CertFile: base + ".pem", P12File: base + ".p12", P12Password: "test-p12-pw"}
	keyUsage := "digitalSignature,keyEncipherment"
	switch opts.KeyType {
	case "rsa2048", "rsa3072":
		MustRun(t, nil, "openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:"+strings.TrimPrefix(opts.KeyType, "rsa"), "-out", id.KeyFile)
	case "p256", "p384":
		curve := map[string]string{"p256": "P-256", "p384": "P-384"}[opts.KeyType]
		MustRun(t, nil, "openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:"+curve, "-out", id.KeyFile)
		keyUsage = "digitalSignature,keyAgreement"
	default:
		t.Fatalf("testpeer: unknown key type %q", opts.KeyType)
	}
	csr := base + ".csr"
	MustRun(t, nil, "openssl", "req", "-new", "-key", id.KeyFile, "-out", csr, "-subj", "/O=sealgate test/CN="+email)
	ext := writeFile(t, p.Dir, fmt.Sprintf("%d.ext", n), "basicConstraints=critical,CA:FALSE\n"+
		"keyUsage=critical,"+keyUsage+"\nextendedKeyUsage="+opts.EKU+"\nsubjectAltName=email:"+email+"\n"+
		"subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
	MustRun(t, nil, "openssl", "x509", "-req", "-in", csr, "-CA", p.InterFile, "-CAkey", p.interKey,
		"-set_serial", fmt.Sprint(n), "-days", fmt.Sprint(opts.Days), "-extfile", ext, "-out", id.CertFile)
	p.exportP12(t, id)
	id.Cert = ReadCert(t, id.CertFile)
	id.Key = ReadKey(t, id.KeyFile)
	return id
}

// ReadCert parses the first PEM certificate of file.
func ReadCert(t testing.TB, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c
}

// ReadKey parses a PEM PKCS#8 private key.
func ReadKey(t testing.TB, file string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return k.(crypto.Signer)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// WriteFile writes data to name in dir and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	return writeFile(t, dir, name, string(data))
}

// exportP12 writes id's key and chain as a legacy (3DES, SHA-1 MAC)
// PKCS#12, the profile gpgsm reads. Each export draws a new random salt.
func (p *PKI) exportP12(t testing.TB, id *Identity) {
	t.Helper()
	MustRun(t, nil, "openssl", "pkcs12", "-export", "-inkey", id.KeyFile, "-in", id.CertFile, "-certfile", p.ChainFile,
		"-name", id.Email, "-passout", "pass:"+id.P12Password, "-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES",
		"-macalg", "sha1", "-out", id.P12File)
}
