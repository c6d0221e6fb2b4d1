package embeddedca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki/internal/pkitest"
)

// testCA is a CA directory with a clock the test moves; open gives as many
// handles on it as a test wants (a CLI process and serve, say).
type testCA struct {
	dir    string
	sealer *pkitest.Sealer
	clock  atomic.Int64 // unix seconds
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	tc := &testCA{dir: t.TempDir(), sealer: pkitest.NewSealer()}
	tc.clock.Store(time.Now().Unix())
	if _, err := Init(tc.dir, tc.sealer, InitOptions{KeyBits: 2048}); err != nil {
		t.Fatal(err)
	}
	return tc
}

func (tc *testCA) now() time.Time          { return time.Unix(tc.clock.Load(), 0) }
func (tc *testCA) advance(d time.Duration) { tc.clock.Add(int64(d / time.Second)) }

func (tc *testCA) open(t *testing.T) *CA {
	t.Helper()
	ca, err := Open(tc.dir, tc.sealer, Options{Now: tc.now})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// leaves issues n throwaway certificates under the issuing CA with
// serials from first on (directly with its key: fast, and Revoke only
// checks the issuer's signature).
func leaves(t *testing.T, ca *CA, first, n int) []*x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for i := first; i < first+n; i++ {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i)), Subject: pkix.Name{CommonName: fmt.Sprint("user", i)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.issuing, key.Public(), ca.signer)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		out = append(out, c)
	}
	return out
}

func readCRL(t *testing.T, ca *CA) *x509.RevocationList {
	t.Helper()
	der, err := os.ReadFile(ca.CRLPath())
	if err != nil {
		t.Fatal(err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return rl
}

// TestConcurrentRevocationsAllSurvive is the lost update: `sealgate cert
// revoke` (one CA handle) revokes while serve (another handle) revokes
// and refreshes the CRL. Each read-modify-write of revoked.json + crl.der
// must see the other's: every revocation is on the list and in the CRL,
// and openssl accepts the CRL and lists them all.
func TestConcurrentRevocationsAllSurvive(t *testing.T) {
	tc := newTestCA(t)
	cli, srv := tc.open(t), tc.open(t)
	const perHandle = 12
	certs := leaves(t, cli, 100, 2*perHandle)
	var wg sync.WaitGroup
	errs := make(chan error, 4*perHandle)
	for h, ca := range []*CA{cli, srv} {
		for _, c := range certs[h*perHandle : (h+1)*perHandle] {
			wg.Add(2)
			go func() { defer wg.Done(); errs <- ca.Revoke(t.Context(), c, 1) }()
			go func() { defer wg.Done(); errs <- srv.RefreshCRL() }()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	judge := tc.open(t)
	rl := readCRL(t, judge)
	inCRL := map[string]bool{}
	for _, e := range rl.RevokedCertificateEntries {
		inCRL[e.SerialNumber.Text(16)] = true
	}
	var list revokedList
	b, _ := os.ReadFile(filepath.Join(tc.dir, revokedFile))
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	if rl.Number.Int64() != list.CRLNumber {
		t.Errorf("crl.der is number %v, revoked.json says %d", rl.Number, list.CRLNumber)
	}
	if want := int64(1 + 2*2*perHandle); list.CRLNumber != want {
		t.Errorf("CRL number %d after %d signings, want %d (a signing was lost)", list.CRLNumber, 2*2*perHandle, want)
	}
	for _, c := range certs {
		serial := c.SerialNumber.Text(16)
		if ok, err := judge.IsRevoked(serial); err != nil || !ok {
			t.Errorf("serial %s lost from revoked.json (%v)", serial, err)
		}
		if !inCRL[serial] {
			t.Errorf("serial %s missing from crl.der", serial)
		}
	}
	verifyWithOpenSSL(t, judge, certs)
}

// verifyWithOpenSSL has openssl check the CRL's signature against the
// issuing CA and list the revoked serials.
func verifyWithOpenSSL(t *testing.T, ca *CA, revoked []*x509.Certificate) {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "issuing.pem")
	if err := os.WriteFile(caFile, pemCert(ca.IssuingCert()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := testpeer.Run(t, nil, "openssl", "crl", "-inform", "DER", "-in", ca.CRLPath(), "-CAfile", caFile, "-noout", "-text")
	if r.ExitCode != 0 || !strings.Contains(string(r.Stderr)+string(r.Stdout), "verify OK") {
		t.Fatalf("openssl crl -verify: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`Serial Number: ([0-9A-F]+)`).FindAllStringSubmatch(string(r.Stdout), -1) {
		listed[strings.TrimLeft(m[1], "0")] = true
	}
	for _, c := range revoked {
		if s := strings.ToUpper(c.SerialNumber.Text(16)); !listed[s] {
			t.Errorf("openssl does not list serial %s", s)
		}
	}
}

// TestRefreshCRLIfDue walks the clock through a CRL's week: nothing is
// signed in the first half, it is re-signed once less than half is left
// or when crl.der is missing, damaged, someone else's or behind the list.
func TestRefreshCRLIfDue(t *testing.T) {
	tc := newTestCA(t)
	ca := tc.open(t)
	other := newTestCA(t).open(t)
	for _, step := range []struct {
		name    string
		advance time.Duration
		tamper  func(t *testing.T)
		resign  bool
	}{
		{"fresh-after-init", time.Hour, nil, false},
		{"just-before-halfway", 3*24*time.Hour + 10*time.Hour, nil, false},
		{"past-halfway", 2 * time.Hour, nil, true},
		{"fresh-again", time.Hour, nil, false},
		{"expired-nobody-fetched", 8 * 24 * time.Hour, nil, true},
		{"deleted", 0, func(t *testing.T) { os.Remove(ca.CRLPath()) }, true},
		{"damaged", 0, func(t *testing.T) { os.WriteFile(ca.CRLPath(), []byte("0\x82garbage"), 0o644) }, true},
		{"foreign-crl", 0, func(t *testing.T) {
			der, err := other.CRL()
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(ca.CRLPath(), der, 0o644)
		}, true},
		{"behind-the-list", 0, func(t *testing.T) {
			// A crash between writing revoked.json and crl.der.
			list, _ := ca.readRevoked()
			list.CRLNumber++
			b, _ := json.Marshal(list)
			os.WriteFile(filepath.Join(tc.dir, revokedFile), b, 0o600)
		}, true},
		{"settled", 0, nil, false},
	} {
		t.Run(step.name, func(t *testing.T) {
			tc.advance(step.advance)
			if step.tamper != nil {
				step.tamper(t)
			}
			before, _ := os.ReadFile(ca.CRLPath())
			res, err := ca.RefreshCRLIfDue()
			if err != nil {
				t.Fatal(err)
			}
			after, _ := os.ReadFile(ca.CRLPath())
			if res.Refreshed != step.resign || bytes.Equal(before, after) == step.resign {
				t.Fatalf("refreshed=%v (file changed=%v), want %v: %s", res.Refreshed, !bytes.Equal(before, after), step.resign, res.Reason)
			}
			rl := readCRL(t, ca)
			if rl.Number.Int64() != res.Number || !rl.NextUpdate.Equal(res.NextUpdate) {
				t.Fatalf("reported number %d / %s, crl.der has %v / %s", res.Number, res.NextUpdate, rl.Number, rl.NextUpdate)
			}
			if left := rl.NextUpdate.Sub(tc.now()); left < defaultCRLPeriod/2 {
				t.Fatalf("after the check only %s of validity left", left)
			}
		})
	}
}

// TestCRLHandlerNeverSigns: fetching /crl, however often and however
// close to expiry, only reads crl.der (the old handler re-signed outside
// any cross-process lock); without a CRL it answers 503.
func TestCRLHandlerNeverSigns(t *testing.T) {
	tc := newTestCA(t)
	ca := tc.open(t)
	onDisk, err := os.ReadFile(ca.CRLPath())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ca.Handler())
	defer srv.Close()
	get := func() (int, []byte) {
		resp, err := http.Get(srv.URL + "/crl")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, d := range []time.Duration{0, 6*24*time.Hour + 23*time.Hour, 2 * 24 * time.Hour} {
		tc.advance(d)
		code, body := get()
		if code != http.StatusOK || !bytes.Equal(body, onDisk) {
			t.Fatalf("at +%s: %d, served %d bytes, want the %d on disk", d, code, len(body), len(onDisk))
		}
		if now, _ := os.ReadFile(ca.CRLPath()); !bytes.Equal(now, onDisk) {
			t.Fatalf("at +%s: GET /crl rewrote crl.der", d)
		}
	}
	os.Remove(ca.CRLPath())
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("without crl.der: %d, want 503", code)
	}
	if _, err := os.Stat(ca.CRLPath()); err == nil {
		t.Fatal("GET /crl created crl.der")
	}
}

// TestCRLNumberKeepsRising: revoked.json restored from an older backup
// (lower crl_number) must not make the CA reuse CRL numbers (RFC 5280
// §5.2.3: relying parties keep the highest they saw).
func TestCRLNumberKeepsRising(t *testing.T) {
	tc := newTestCA(t)
	ca := tc.open(t)
	backup, _ := os.ReadFile(filepath.Join(tc.dir, revokedFile))
	for range 3 {
		if err := ca.RefreshCRL(); err != nil {
			t.Fatal(err)
		}
	}
	high := readCRL(t, ca).Number.Int64()
	if err := os.WriteFile(filepath.Join(tc.dir, revokedFile), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(t.Context(), leaves(t, ca, 7, 1)[0], 1); err != nil {
		t.Fatal(err)
	}
	if got := readCRL(t, ca).Number.Int64(); got <= high {
		t.Fatalf("CRL number %d after %d", got, high)
	}
}
