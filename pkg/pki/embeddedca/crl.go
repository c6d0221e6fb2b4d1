package embeddedca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sealgate/sealgate/pkg/pki"
)

// revokedEntry is one line of the CA's revocation list (revoked.json).
type revokedEntry struct {
	Serial    string    `json:"serial"` // hex, lower case
	RevokedAt time.Time `json:"revoked_at"`
	Reason    int       `json:"reason"`
	NotAfter  time.Time `json:"not_after"`
}

type revokedList struct {
	CRLNumber int64          `json:"crl_number"`
	Entries   []revokedEntry `json:"entries"`
}

// Revoke adds the certificate to the revocation list and re-signs the CRL
// at once, so the next fetch shows it. Revoking twice is a no-op.
func (c *CA) Revoke(_ context.Context, cert *x509.Certificate, reasonCode int) error {
	if cert == nil {
		return errors.New("revoke: no certificate")
	}
	if err := cert.CheckSignatureFrom(c.issuing); err != nil {
		return fmt.Errorf("revoke: certificate %x was not issued by this CA: %w", cert.SerialNumber, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	list, err := c.readRevoked()
	if err != nil {
		return err
	}
	serial := pki.SerialHex(cert)
	for _, e := range list.Entries {
		if e.Serial == serial {
			return nil
		}
	}
	list.Entries = append(list.Entries, revokedEntry{Serial: serial, RevokedAt: time.Now().UTC().Truncate(time.Second), Reason: reasonCode, NotAfter: cert.NotAfter})
	return c.signCRL(list)
}

// IsRevoked reports whether the serial (hex) is on the revocation list.
func (c *CA) IsRevoked(serialHex string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	list, err := c.readRevoked()
	if err != nil {
		return false, err
	}
	for _, e := range list.Entries {
		if e.Serial == serialHex {
			return true, nil
		}
	}
	return false, nil
}

// RefreshCRL re-signs the CRL with a new number and validity window. serve
// calls it periodically (the CRL is valid for a week; refresh daily).
func (c *CA) RefreshCRL() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	list, err := c.readRevoked()
	if err != nil {
		return err
	}
	return c.signCRL(list)
}

// CRLPath is where the current DER CRL lives.
func (c *CA) CRLPath() string { return filepath.Join(c.dir, crlFile) }

// CRL returns the current DER-encoded CRL, re-signing it first when it
// expires within a day.
func (c *CA) CRL() ([]byte, error) {
	c.mu.Lock()
	der, err := os.ReadFile(c.CRLPath())
	c.mu.Unlock()
	if err == nil {
		if rl, perr := x509.ParseRevocationList(der); perr == nil && time.Until(rl.NextUpdate) > 24*time.Hour {
			return der, nil
		}
	}
	if err := c.RefreshCRL(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return os.ReadFile(c.CRLPath())
}

// Handler serves the CRL (GET /crl in `serve`) as application/pkix-crl.
func (c *CA) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		der, err := c.CRL()
		if err != nil {
			http.Error(w, "CRL unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Content-Length", strconv.Itoa(len(der)))
		w.Header().Set("Cache-Control", "max-age=300")
		if r.Method == http.MethodGet {
			_, _ = w.Write(der)
		}
	})
}

func (c *CA) readRevoked() (revokedList, error) {
	var list revokedList
	b, err := os.ReadFile(filepath.Join(c.dir, revokedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return list, nil
	}
	if err != nil {
		return list, fmt.Errorf("reading revocation list: %w", err)
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return list, fmt.Errorf("revocation list %s is damaged: %w", filepath.Join(c.dir, revokedFile), err)
	}
	return list, nil
}

// signCRL bumps the CRL number, writes the list first (the record of
// truth) and then the signed CRL. Called with c.mu held.
func (c *CA) signCRL(list revokedList) error {
	list.CRLNumber++
	now := time.Now().UTC().Truncate(time.Second)
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(list.CRLNumber),
		ThisUpdate: now,
		NextUpdate: now.Add(defaultCRLPeriod),
	}
	for _, e := range list.Entries {
		// Expired certificates may leave the CRL (RFC 5280 3.3), but only
		// well after expiry so that late verifiers still see them.
		if !e.NotAfter.IsZero() && now.After(e.NotAfter.Add(90*24*time.Hour)) {
			continue
		}
		sn, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			return fmt.Errorf("revocation list: bad serial %q", e.Serial)
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: sn, RevocationTime: e.RevokedAt, ReasonCode: e.Reason,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, c.issuing, c.signer)
	if err != nil {
		return fmt.Errorf("signing CRL: %w", err)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(c.dir, revokedFile), b, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.dir, crlFile), der, 0o644)
}
