package testpeer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// NSS is an NSS certificate database (what Thunderbird uses) driven with
// certutil, pk12util and cmsutil.
type NSS struct {
	DB  string // "sql:DIR"
	dir string
}

// NewNSS creates a database trusting pki's root and holding ids' keys.
func NewNSS(t testing.TB, pki *PKI, ids ...*Identity) *NSS {
	t.Helper()
	Require(t, "certutil")
	dir := t.TempDir()
	n := &NSS{DB: "sql:" + dir, dir: t.TempDir()}
	MustRun(t, nil, "certutil", "-N", "-d", n.DB, "--empty-password")
	MustRun(t, nil, "certutil", "-A", "-n", "sealgate-test-root", "-t", "CT,C,C", "-d", n.DB, "-a", "-i", pki.RootFile)
	MustRun(t, nil, "certutil", "-A", "-n", "sealgate-test-inter", "-t", ",,", "-d", n.DB, "-a", "-i", pki.InterFile)
	for _, id := range ids {
		MustRun(t, nil, "pk12util", "-i", id.P12File, "-d", n.DB, "-W", id.P12Password, "-K", "")
	}
	return n
}

// ImportCert adds a recipient's certificate (no key) under nickname.
func (n *NSS) ImportCert(t testing.TB, nickname, certFile string) {
	t.Helper()
	MustRun(t, nil, "certutil", "-A", "-n", nickname, "-t", ",,", "-d", n.DB, "-a", "-i", certFile)
}

// VerifyDetached runs cmsutil -D with detached content; GoodSignature in
// the output means NSS accepted it.
func (n *NSS) VerifyDetached(t testing.TB, sig, data []byte) Result {
	t.Helper()
	s := WriteFile(t, n.dir, "sig.der", sig)
	d := WriteFile(t, n.dir, "data.bin", data)
	return Run(t, nil, "cmsutil", "-D", "-d", n.DB, "-i", s, "-c", d, "-n", "-h", "1")
}

// GoodSignature reports whether cmsutil's output says the signature is good.
func GoodSignature(r Result) bool {
	return r.ExitCode == 0 && strings.Contains(string(r.Stdout), "signer0.status=GoodSignature")
}

// Decrypt decodes an enveloped CMS and returns the content.
func (n *NSS) Decrypt(t testing.TB, der []byte) Result {
	t.Helper()
	in := WriteFile(t, n.dir, "enc.der", der)
	return Run(t, nil, "cmsutil", "-D", "-d", n.DB, "-i", in)
}

// Encrypt makes an enveloped-data for the recipients (addresses or nicknames).
func (n *NSS) Encrypt(t testing.TB, data []byte, recipients ...string) []byte {
	t.Helper()
	in := WriteFile(t, n.dir, "plain.bin", data)
	out := filepath.Join(n.dir, "enc.cms")
	MustRun(t, nil, "cmsutil", "-E", "-d", n.DB, "-r", strings.Join(recipients, ","), "-i", in, "-o", out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// SignDetached makes a detached SHA-256 signature with signing time and
// capabilities, as Thunderbird does.
func (n *NSS) SignDetached(t testing.TB, data []byte, nickname string) []byte {
	t.Helper()
	in := WriteFile(t, n.dir, "tosign.bin", data)
	out := filepath.Join(n.dir, "sig.cms")
	MustRun(t, nil, "cmsutil", "-S", "-d", n.DB, "-N", nickname, "-T", "-G", "-P", "-H", "SHA256", "-i", in, "-o", out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
