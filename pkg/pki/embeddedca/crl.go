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
	"slices"
	"strconv"
	"syscall"
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

// crlLockFile serialises every read-modify-write of revoked.json and
// crl.der: serve's refresher, `sealgate cert revoke` in another process and
// a rollout's revocations. An flock belongs to the open file, and each
// lockCRL opens its own, so two handles in one process exclude each other
// just as two processes do.
const crlLockFile = "crl.lock"

// lockCRL takes the CA directory's CRL lock, waiting for a holder: every
// holder only reads, signs and writes two small files.
func (c *CA) lockCRL() (unlock func(), err error) {
	path := filepath.Join(c.dir, crlLockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the CRL lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s (is the CA directory on a file system without flock?): %w", path, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// Revoke adds the certificate to the revocation list and re-signs the CRL
// at once, so the next fetch shows it. Revoking twice is a no-op (unless
// the CRL on disk lags the list, e.g. after a crash: then it is re-signed).
func (c *CA) Revoke(_ context.Context, cert *x509.Certificate, reasonCode int) error {
	if cert == nil {
		return errors.New("revoke: no certificate")
	}
	if err := cert.CheckSignatureFrom(c.issuing); err != nil {
		return fmt.Errorf("revoke: certificate %x was not issued by this CA: %w", cert.SerialNumber, err)
	}
	unlock, err := c.lockCRL()
	if err != nil {
		return fmt.Errorf("revoke %x: %w", cert.SerialNumber, err)
	}
	defer unlock()
	list, err := c.readRevoked()
	if err != nil {
		return err
	}
	serial := pki.SerialHex(cert)
	listed := slices.ContainsFunc(list.Entries, func(e revokedEntry) bool { return e.Serial == serial })
	if listed && c.crlStatus(list).matchesList {
		return nil
	}
	if !listed {
		list.Entries = append(list.Entries, revokedEntry{Serial: serial, RevokedAt: c.now().UTC().Truncate(time.Second), Reason: reasonCode, NotAfter: cert.NotAfter})
	}
	return c.signCRL(list)
}

// IsRevoked reports whether the serial (hex) is on the revocation list.
// It needs no lock: revoked.json is only ever replaced by a rename.
func (c *CA) IsRevoked(serialHex string) (bool, error) {
	list, err := c.readRevoked()
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(list.Entries, func(e revokedEntry) bool { return e.Serial == serialHex }), nil
}

// RefreshCRL re-signs the CRL with a new number and validity window.
func (c *CA) RefreshCRL() error {
	unlock, err := c.lockCRL()
	if err != nil {
		return err
	}
	defer unlock()
	list, err := c.readRevoked()
	if err != nil {
		return err
	}
	return c.signCRL(list)
}

// CRLRefresh is what RefreshCRLIfDue did.
type CRLRefresh struct {
	Refreshed  bool
	Reason     string // why it was re-signed, or why not
	Number     int64
	NextUpdate time.Time
}

// RefreshCRLIfDue re-signs the CRL when less than half of its validity
// is left, or when crl.der is missing, damaged, not signed by the issuing
// CA or behind revoked.json. serve calls it at least hourly, so a
// published CRL (perhaps copied to a web server) never expires while
// serve runs, whether or not anybody fetches /crl.
func (c *CA) RefreshCRLIfDue() (CRLRefresh, error) {
	unlock, err := c.lockCRL()
	if err != nil {
		return CRLRefresh{}, err
	}
	defer unlock()
	list, err := c.readRevoked()
	if err != nil {
		return CRLRefresh{}, err
	}
	before := c.crlStatus(list)
	if before.fresh {
		return CRLRefresh{Reason: before.reason, Number: before.number, NextUpdate: before.nextUpdate}, nil
	}
	if err := c.signCRL(list); err != nil {
		return CRLRefresh{}, err
	}
	after, err := c.readRevoked()
	if err != nil {
		return CRLRefresh{}, err
	}
	st := c.crlStatus(after)
	return CRLRefresh{Refreshed: true, Reason: before.reason, Number: st.number, NextUpdate: st.nextUpdate}, nil
}

// crlState describes crl.der against the revocation list.
type crlState struct {
	number      int64 // 0: no readable CRL of ours
	nextUpdate  time.Time
	matchesList bool // ours, readable, and its number is the list's
	fresh       bool // matchesList and more than half its period left
	reason      string
}

func (c *CA) crlStatus(list revokedList) crlState {
	der, err := os.ReadFile(c.CRLPath())
	if err != nil {
		return crlState{reason: fmt.Sprintf("no CRL to serve (%v)", err)}
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return crlState{reason: fmt.Sprintf("crl.der is damaged (%v)", err)}
	}
	if err := rl.CheckSignatureFrom(c.issuing); err != nil {
		return crlState{reason: fmt.Sprintf("crl.der is not signed by the issuing CA (%v)", err)}
	}
	st := crlState{number: rl.Number.Int64(), nextUpdate: rl.NextUpdate}
	if !rl.Number.IsInt64() || rl.Number.Int64() != list.CRLNumber {
		st.reason = fmt.Sprintf("crl.der is number %v, revoked.json says %d", rl.Number, list.CRLNumber)
		return st
	}
	st.matchesList = true
	halfway := rl.ThisUpdate.Add(rl.NextUpdate.Sub(rl.ThisUpdate) / 2)
	if !c.now().Before(halfway) {
		st.reason = fmt.Sprintf("less than half of its validity left (nextUpdate %s)", rl.NextUpdate.UTC().Format(time.RFC3339))
		return st
	}
	st.fresh = true
	st.reason = fmt.Sprintf("fresh until %s", halfway.UTC().Format(time.RFC3339))
	return st
}

// CRLPath is where the current DER CRL lives.
func (c *CA) CRLPath() string { return filepath.Join(c.dir, crlFile) }

// CRL returns the current DER-encoded CRL as it is on disk. It never signs:
// keeping it fresh is RefreshCRLIfDue's job, under the CRL lock.
func (c *CA) CRL() ([]byte, error) {
	der, err := os.ReadFile(c.CRLPath())
	if err != nil {
		return nil, fmt.Errorf("reading the CRL (sealgate serve re-signs it; `sealgate pki init` creates it): %w", err)
	}
	return der, nil
}

// Handler serves the CRL (GET /crl in `serve`) as application/pkix-crl.
// It only reads crl.der, so a flood of fetches cannot make the CA sign.
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
	path := filepath.Join(c.dir, revokedFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return list, nil
	}
	if err != nil {
		return list, fmt.Errorf("reading revocation list: %w", err)
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return list, fmt.Errorf("revocation list %s is damaged (restore it from a backup; it is the record of every revocation): %w", path, err)
	}
	return list, nil
}

// signCRL gives the CRL the next number, writes the list first (the record
// of truth) and then the signed CRL, each by temp file, fsync and rename.
// Called with the CRL lock held. The number also passes the one in
// crl.der, so it keeps rising (RFC 5280 §5.2.3) even if revoked.json was
// restored from an older backup.
func (c *CA) signCRL(list revokedList) error {
	if st := c.crlStatus(list); st.number > list.CRLNumber {
		list.CRLNumber = st.number
	}
	list.CRLNumber++
	now := c.now().UTC().Truncate(time.Second)
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
