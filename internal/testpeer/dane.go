package testpeer

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// HostCertOptions describe a TLS server certificate (an MX host's).
type HostCertOptions struct {
	// Names are the subjectAltName DNS names; empty: none, only the CN.
	Names []string
	// CN is the subject common name; default the first of Names.
	CN string
	// KeyType: p256 (default) or rsa2048.
	KeyType string
	// Days of validity, default 365.
	Days int
}

// IssueHost makes a TLS server certificate signed by the intermediate CA
// (openssl x509 -req). Its ChainFile-style companion for a server is
// id.CertFile followed by p.InterFile (and p.RootFile for a full chain).
func (p *PKI) IssueHost(t testing.TB, opts HostCertOptions) *Identity {
	t.Helper()
	base, ext := p.hostFiles(t, opts)
	id := &Identity{KeyFile: base + ".key", CertFile: base + ".pem"}
	hostKey(t, opts.KeyType, id.KeyFile)
	csr := base + ".csr"
	MustRun(t, nil, "openssl", "req", "-new", "-key", id.KeyFile, "-out", csr, "-subj", "/O=sealgate test/CN="+hostCN(opts))
	MustRun(t, nil, "openssl", "x509", "-req", "-in", csr, "-CA", p.InterFile, "-CAkey", p.interKey,
		"-set_serial", fmt.Sprint(p.serial.Add(1)), "-days", fmt.Sprint(hostDays(opts)), "-extfile", ext, "-out", id.CertFile)
	id.Cert = ReadCert(t, id.CertFile)
	id.Key = ReadKey(t, id.KeyFile)
	return id
}

// SelfSignedHost makes a self-signed TLS server certificate (openssl req
// -x509) in dir, as many MX hosts have.
func SelfSignedHost(t testing.TB, dir string, opts HostCertOptions) *Identity {
	t.Helper()
	Require(t, "openssl")
	name := strings.NewReplacer("*", "star", "/", "_").Replace(hostCN(opts))
	id := &Identity{KeyFile: filepath.Join(dir, name+"-self.key"), CertFile: filepath.Join(dir, name+"-self.pem")}
	hostKey(t, opts.KeyType, id.KeyFile)
	args := []string{"req", "-x509", "-new", "-key", id.KeyFile, "-out", id.CertFile, "-days", fmt.Sprint(hostDays(opts)),
		"-subj", "/O=sealgate test/CN=" + hostCN(opts), "-addext", "basicConstraints=critical,CA:FALSE",
		"-addext", "extendedKeyUsage=serverAuth"}
	if len(opts.Names) > 0 {
		args = append(args, "-addext", "subjectAltName="+sanList(opts.Names))
	}
	MustRun(t, nil, "openssl", args...)
	id.Cert = ReadCert(t, id.CertFile)
	id.Key = ReadKey(t, id.KeyFile)
	return id
}

// TLSA returns the TLSA record data "USAGE SELECTOR MATCHING HEX" for the
// certificate in certFile, computed by openssl, not by our code: selector 0
// is the DER certificate, 1 its SubjectPublicKeyInfo (openssl x509 -pubkey
// | openssl pkey -pubin -outform DER); matching 0 is the bytes, 1 their
// SHA-256, 2 their SHA-512 (openssl dgst).
func TLSA(t testing.TB, certFile string, usage, selector, matching int) string {
	t.Helper()
	var der []byte
	switch selector {
	case 0:
		der = MustRun(t, nil, "openssl", "x509", "-in", certFile, "-outform", "DER")
	case 1:
		pub := MustRun(t, nil, "openssl", "x509", "-in", certFile, "-pubkey", "-noout")
		der = MustRun(t, pub, "openssl", "pkey", "-pubin", "-outform", "DER")
	default:
		t.Fatalf("testpeer.TLSA: selector %d", selector)
	}
	var data string
	switch matching {
	case 0:
		data = hex.EncodeToString(der)
	case 1, 2:
		alg := map[int]string{1: "-sha256", 2: "-sha512"}[matching]
		out := strings.Fields(string(MustRun(t, der, "openssl", "dgst", alg, "-r")))
		if len(out) == 0 {
			t.Fatalf("openssl dgst printed nothing")
		}
		data = out[0]
	default:
		t.Fatalf("testpeer.TLSA: matching type %d", matching)
	}
	return fmt.Sprintf("%d %d %d %s", usage, selector, matching, strings.ToUpper(data))
}

func (p *PKI) hostFiles(t testing.TB, opts HostCertOptions) (base, ext string) {
	t.Helper()
	n := p.serial.Add(1)
	base = filepath.Join(p.Dir, fmt.Sprintf("%d-%s", n, strings.NewReplacer("*", "star", "/", "_").Replace(hostCN(opts))))
	e := "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" +
		"extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
	if len(opts.Names) > 0 {
		e += "subjectAltName=" + sanList(opts.Names) + "\n"
	}
	return base, writeFile(t, p.Dir, fmt.Sprintf("%d-host.ext", n), e)
}

func hostKey(t testing.TB, keyType, file string) {
	t.Helper()
	switch keyType {
	case "", "p256":
		MustRun(t, nil, "openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file)
	case "rsa2048":
		MustRun(t, nil, "openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", file)
	default:
		t.Fatalf("testpeer: unknown host key type %q", keyType)
	}
}

func hostCN(opts HostCertOptions) string {
	if opts.CN != "" {
		return opts.CN
	}
	if len(opts.Names) > 0 {
		return opts.Names[0]
	}
	return "host.invalid"
}

func hostDays(opts HostCertOptions) int {
	if opts.Days > 0 {
		return opts.Days
	}
	return 365
}

func sanList(names []string) string {
	var s []string
	for _, n := range names {
		s = append(s, "DNS:"+n)
	}
	return strings.Join(s, ",")
}
