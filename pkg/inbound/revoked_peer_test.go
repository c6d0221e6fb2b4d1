package inbound

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// A partner whose certificate its CA has revoked (an openssl-made CRL
// served on loopback, named in the certificate) fails, though the
// signature itself is intact.
func TestRevokedSignerFails(t *testing.T) {
	f := newPeerFixture(t)
	dir := t.TempDir()
	crlFile := filepath.Join(dir, "ca.crl")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, crlFile)
	}))
	t.Cleanup(srv.Close)

	// A partner certificate naming the CRL, issued by the fixture's
	// intermediate CA (its key is in the PKI directory).
	interKey := filepath.Join(f.pki.Dir, "inter.key")
	key, csr, cert := filepath.Join(dir, "dave.key"), filepath.Join(dir, "dave.csr"), filepath.Join(dir, "dave.pem")
	testpeer.MustRun(t, nil, "openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
		"-subj", "/O=partner/CN=dave@partner.example")
	ext := filepath.Join(dir, "dave.ext")
	os.WriteFile(ext, []byte("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"+
		"extendedKeyUsage=emailProtection\nsubjectAltName=email:dave@partner.example\n"+
		"crlDistributionPoints=URI:"+srv.URL+"/ca.crl\n"), 0o600)
	testpeer.MustRun(t, nil, "openssl", "x509", "-req", "-in", csr, "-CA", f.pki.InterFile, "-CAkey", interKey,
		"-set_serial", "0x7777", "-days", "30", "-extfile", ext, "-out", cert)

	// The CA's database says 0x7777 is revoked; openssl ca makes the CRL.
	index := filepath.Join(dir, "index.txt")
	os.WriteFile(index, []byte("R\t300101000000Z\t250101000000Z,keyCompromise\t7777\tunknown\t/O=partner/CN=dave@partner.example\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "crlnumber"), []byte("01\n"), 0o600)
	conf := filepath.Join(dir, "ca.cnf")
	os.WriteFile(conf, []byte(fmt.Sprintf("[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ncrlnumber = %s\ncertificate = %s\nprivate_key = %s\ndefault_md = sha256\n",
		index, filepath.Join(dir, "crlnumber"), f.pki.InterFile, interKey)), 0o600)
	testpeer.MustRun(t, nil, "openssl", "ca", "-gencrl", "-config", conf, "-crldays", "1", "-out", crlFile)

	dave := &testpeer.Identity{Email: "dave@partner.example", CertFile: cert, KeyFile: key}
	signed := f.sign(t, []byte(entity), dave, "dave@partner.example")
	res, err := f.opener.Open(context.Background(), f.encrypt(t, signed, f.bob, "-aes256", "-from", "dave@partner.example"), "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := splitAt(t, string(res.Data))
	if res.Outcome != SignatureFail || !strings.Contains(hdr, "revocation") || !strings.Contains(hdr, "revoked") {
		t.Fatalf("outcome %s, want fail for a revoked signer:\n%s", res.Outcome, hdr)
	}
	if len(f.harvested.got) != 0 {
		t.Fatal("a revoked signer was harvested")
	}
}
