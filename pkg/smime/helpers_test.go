package smime

import (
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// A typical message as Exchange hands it over: 8bit UTF-8 text, transport
// headers, bare LF line ends as a file on disk would have.
const plainMsg = "From: Alice Example <alice@example.org>\n" +
	"To: Bob Partner <bob@partner.test>\n" +
	"Subject: Quarterly numbers\n" +
	"Date: Wed, 25 Nov 2026 09:00:00 +0000\n" +
	"Message-ID: <q3-numbers@example.org>\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	"Grüße aus Köln,\n" +
	"the numbers are attached.\n" +
	"From here on a line starting with From.\n"

const multipartMsg = "From: alice@example.org\r\n" +
	"To: bob@partner.test\r\n" +
	"Subject: with attachment\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer-b\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--outer-b\r\n" +
	"Content-Type: text/plain; charset=iso-8859-1\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Gr\xfc\xdfe\r\n" +
	"--outer-b\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Disposition: attachment; filename=\"data.bin\"\r\n" +
	"Content-Transfer-Encoding: binary\r\n" +
	"\r\n" +
	"\x00\x01\x02\xff\xfe binary\r\n" +
	"--outer-b--\r\n" +
	"epilogue\r\n"

type fixture struct {
	pki                   *testpeer.PKI
	alice, bob, carol, ec *testpeer.Identity
	ec384                 *testpeer.Identity
	roots                 *x509.CertPool
	dir                   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testpeer.Require(t, "openssl")
	f := &fixture{pki: testpeer.NewPKI(t), dir: t.TempDir()}
	f.alice = f.pki.Issue(t, "alice@example.org", testpeer.IssueOptions{})
	f.bob = f.pki.Issue(t, "bob@partner.test", testpeer.IssueOptions{})
	f.carol = f.pki.Issue(t, "carol@partner.test", testpeer.IssueOptions{})
	f.ec = f.pki.Issue(t, "erin@example.org", testpeer.IssueOptions{KeyType: "p256"})
	f.ec384 = f.pki.Issue(t, "frank@partner.test", testpeer.IssueOptions{KeyType: "p384"})
	f.roots = x509.NewCertPool()
	f.roots.AddCert(f.pki.Root)
	return f
}

func (f *fixture) chain(id *testpeer.Identity) []*x509.Certificate {
	return []*x509.Certificate{id.Cert, f.pki.Inter, f.pki.Root}
}

func (f *fixture) file(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// opensslVerify runs `openssl cms -verify -purpose smimesign` on a whole
// S/MIME message and returns the content openssl extracted.
func (f *fixture) opensslVerify(t *testing.T, msg []byte) []byte {
	t.Helper()
	in := f.file(t, "verify.eml", msg)
	r := testpeer.Run(t, nil, "openssl", "cms", "-verify", "-in", in, "-CAfile", f.pki.RootFile, "-purpose", "smimesign")
	if r.ExitCode != 0 || !strings.Contains(string(r.Stderr), "Verification successful") {
		t.Fatalf("openssl cms -verify rejected our signature: exit %d\n%s", r.ExitCode, r.Stderr)
	}
	return r.Stdout
}

func (f *fixture) opensslDecrypt(t *testing.T, msg []byte, id *testpeer.Identity) []byte {
	t.Helper()
	in := f.file(t, "decrypt.eml", msg)
	return testpeer.MustRun(t, nil, "openssl", "cms", "-decrypt", "-in", in, "-recip", id.CertFile, "-inkey", id.KeyFile)
}

// bareCMS returns the DER of the pkcs7-mime body of msg (headers
// stripped), as gpgsm and cmsutil want it.
func bareCMS(t *testing.T, msg []byte) []byte {
	t.Helper()
	fields, body := splitMessage(msg)
	der, err := cmsBody(fields, body)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// detachedParts returns the signed bytes and the signature DER of a
// multipart/signed message, cut by Python's email package
// (testdata/split_signed.py) rather than by our own signedParts, so that
// gpgsm and NSS judge parts our parser did not choose. email finds the
// boundary and the parts and decodes the signature; the signed bytes are
// cut from the raw message on that boundary's delimiter lines, because
// email re-serialises whatever it generates and a signature covers the
// exact bytes of the first part (RFC 1847).
func detachedParts(t *testing.T, msg []byte) ([]byte, []byte) {
	t.Helper()
	r := testpeer.Run(t, msg, python3(t), filepath.Join("testdata", "split_signed.py"))
	if r.ExitCode != 0 {
		t.Fatalf("python email could not split the multipart/signed: exit %d\n%s", r.ExitCode, r.Stderr)
	}
	var parts struct {
		Signed    []byte `json:"signed"`
		Signature []byte `json:"signature"`
	}
	if err := json.Unmarshal(r.Stdout, &parts); err != nil {
		t.Fatalf("reading split_signed.py output %q: %v", r.Stdout, err)
	}
	return parts.Signed, parts.Signature
}

// python3 is Debian's interpreter when there is one: a version manager's
// shim first on PATH costs a quarter of a second per start, and these
// tests start Python dozens of times. Only the standard library is used.
func python3(t *testing.T) string {
	t.Helper()
	const debian = "/usr/bin/python3"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	return testpeer.Require(t, "python3")
}
