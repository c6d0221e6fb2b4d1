package directory

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestValidatorAgainstOpenSSLResponder asks a running `openssl ocsp`
// responder (not x/crypto/ocsp, the library the validator parses with)
// over HTTP, as the validator does in production: POST to the URL in the
// certificate's AIA. Its answers must come out as they were given: good is
// valid, revoked is not, and unknown (a serial the CA never listed, as a
// responder says for a forged or foreign certificate) decides nothing.
func TestValidatorAgainstOpenSSLResponder(t *testing.T) {
	o := newOpensslRevocation(t)
	caCert, caKey := filepath.Join(o.dir, "ca.pem"), filepath.Join(o.dir, "ca.key")
	// The responder picks its own port and the certificates must name it,
	// so the index is written first, from the serials they will carry (an
	// index replaced later is reread only after the next request).
	notAfter := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	planned := func(serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), NotAfter: notAfter, Subject: pkix.Name{CommonName: fmt.Sprint(serial)}}
	}
	const goodSerial, revokedSerial, unlistedSerial = 0x5001, 0x5002, 0x5003
	index := o.writeIndex(t, []*x509.Certificate{planned(goodSerial)}, []*x509.Certificate{planned(revokedSerial)})
	responder := testpeer.StartOCSPResponder(t, testpeer.OCSPResponderOptions{
		Index: index, CA: caCert, SignerCert: caCert, SignerKey: caKey, Extra: []string{"-nmin", "5"}})
	leaf := func(name string, serial int64) *x509.Certificate {
		return o.ca.issue(t, leafSpec{emails: []string{name + "@example.test"}, serial: serial, notAfter: notAfter, ocspURL: responder.URL, noCRL: true})
	}
	good, revoked, unlisted := leaf("good", goodSerial), leaf("revoked", revokedSerial), leaf("unlisted", unlistedSerial)

	tests := []revocationWant{
		{name: "good", cert: good, valid: true, detail: "not revoked (OCSP"},
		{name: "revoked", cert: revoked, detail: "revoked at"},
		{name: "unknown to the responder", cert: unlisted, undecided: true, detail: "OCSP " + responder.URL + ": status unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, o.ca.cert) })
	}
}
