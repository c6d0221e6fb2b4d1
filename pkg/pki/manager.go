package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/sealgate/sealgate/pkg/store"
)

// Store is what the manager needs from pkg/store; *store.Store satisfies it.
type Store interface {
	KeyStorage
	PutCertificate(ctx context.Context, c store.Certificate) error
	Certificates(ctx context.Context, email string) ([]store.Certificate, error)
	CertificateBySerial(ctx context.Context, serial string) (store.Certificate, error)
	Audit(ctx context.Context, e store.AuditEvent) error
}

// Publisher writes users' current certificates to the directory so that
// clients and partners find them.
type Publisher interface {
	// Publish makes certs the user's published certificates (replacing
	// whatever was there).
	Publish(ctx context.Context, u User, certs []*x509.Certificate) error
	// Unpublish removes these certificates from the entry holding email,
	// wherever it is now (the user may have left the groups).
	Unpublish(ctx context.Context, email string, certs []*x509.Certificate) error
}

// Certificate states in the store.
const (
	StateActive     = store.CertActive
	StateSuperseded = store.CertSuperseded
	StateRevoked    = store.CertRevoked
)

// Manager brings certificates in line with the user source. It is safe for
// concurrent use by one rollout at a time (serve's sync and a CLI rollout
// against the same store must not overlap; serve holds the only one).
type Manager struct {
	Store     Store
	Issuer    Issuer
	Users     UserSource
	Publisher Publisher // nil: publishing off

	KeyType     KeyType
	Validity    time.Duration
	RenewBefore time.Duration
	// Actor is written to the audit log ("rollout", "cli", "serve").
	Actor  string
	Logger *slog.Logger
	// Now is the clock (tests move it); nil means time.Now.
	Now func() time.Time
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

func (m *Manager) keystore() *Keystore { return NewKeystore(m.Store) }

// userCerts returns the certificates that belong to email (the store also
// returns those merely carrying it as an alias address).
func (m *Manager) userCerts(ctx context.Context, email string) ([]store.Certificate, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	all, err := m.Store.Certificates(ctx, email)
	if err != nil {
		return nil, err
	}
	var out []store.Certificate
	for _, c := range all {
		if strings.EqualFold(c.Email, email) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Current returns the user's newest active certificate.
func (m *Manager) Current(ctx context.Context, email string) (store.Certificate, error) {
	certs, err := m.userCerts(ctx, email)
	if err != nil {
		return store.Certificate{}, err
	}
	act := active(certs)
	if len(act) == 0 {
		return store.Certificate{}, fmt.Errorf("%s has no active certificate: %w", email, store.ErrNotFound)
	}
	return act[0], nil
}

// Latest returns the user's newest certificate whatever its state.
func (m *Manager) Latest(ctx context.Context, email string) (store.Certificate, error) {
	certs, err := m.userCerts(ctx, email)
	if err != nil {
		return store.Certificate{}, err
	}
	if len(certs) == 0 {
		return store.Certificate{}, fmt.Errorf("%s has no certificate: %w", email, store.ErrNotFound)
	}
	sortNewestFirst(certs)
	return certs[0], nil
}

// Status returns one record per user: the newest active certificate, or
// the newest certificate of any state when none is active.
func (m *Manager) Status(ctx context.Context) ([]store.Certificate, error) {
	all, err := m.Store.Certificates(ctx, "")
	if err != nil {
		return nil, err
	}
	byEmail := groupByEmail(all)
	var out []store.Certificate
	for _, email := range sortedKeys(byEmail) {
		certs := byEmail[email]
		if act := active(certs); len(act) > 0 {
			out = append(out, act[0])
		} else {
			out = append(out, certs[0])
		}
	}
	return out, nil
}

// Key returns the private key of a certificate record.
func (m *Manager) Key(ctx context.Context, c store.Certificate) (crypto.Signer, error) {
	return m.keystore().Signer(ctx, c.KeyID)
}

// userKeyPrefix starts the ids of users' keys in the store.
const userKeyPrefix = "user/"

// userKeyID is the id of a user's n-th key (one per certificate).
func userKeyID(email string, n int) string { return fmt.Sprintf("%s%s/%d", userKeyPrefix, email, n) }

// issue generates (or, when a previous run died after storing it, reuses)
// the key, has it certified and records the certificate as active. The key
// id is derived from the number of certificates the user already has, so a
// rerun after a crash finds the same key instead of leaving orphans;
// newKey says the plan found no key under that id, so none is looked up.
func (m *Manager) issue(ctx context.Context, u User, existing int, newKey bool) (store.Certificate, *x509.Certificate, error) {
	ks := m.keystore()
	keyID := userKeyID(u.Email, existing+1)
	var (
		key crypto.Signer
		err error
	)
	if newKey {
		err = store.ErrNotFound
	} else {
		// An interrupted run may have stored this key and died before the
		// CA answered: use it rather than make a second one.
		key, err = ks.Signer(ctx, keyID)
	}
	if errors.Is(err, store.ErrNotFound) {
		if key, err = m.KeyType.Generate(); err != nil {
			return store.Certificate{}, nil, fmt.Errorf("generating key: %w", err)
		}
		// Intent first: the key is on disk before the CA hears of it.
		if err = ks.Put(ctx, keyID, key); err != nil {
			return store.Certificate{}, nil, err
		}
	} else if err != nil {
		return store.Certificate{}, nil, err
	}
	addrs := u.Addresses()
	csr, err := certificateRequest(u.Email, addrs, key)
	if err != nil {
		return store.Certificate{}, nil, err
	}
	issued, err := m.Issuer.Issue(ctx, IssueRequest{CSR: csr, Emails: addrs, Name: u.Name, Validity: m.Validity})
	if err != nil {
		return store.Certificate{}, nil, fmt.Errorf("CA refused or unreachable: %w", err)
	}
	leaf := issued.Leaf
	rec := store.Certificate{
		Serial:    SerialHex(leaf),
		Email:     u.Email,
		Addresses: addrs,
		DER:       leaf.Raw,
		KeyID:     keyID,
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		State:     StateActive,
		CreatedAt: m.now().UTC(),
	}
	if err := m.record(ctx, rec, "certificate.issue", fmt.Sprintf("serial=%s not_after=%s addresses=%s key_id=%s",
		rec.Serial, rec.NotAfter.UTC().Format(time.RFC3339), strings.Join(addrs, ","), keyID)); err != nil {
		return store.Certificate{}, nil, fmt.Errorf("recording certificate %s (issued, not yet recorded; a rerun issues again): %w", rec.Serial, err)
	}
	return rec, leaf, nil
}

// revoke revokes one certificate at the CA and records it.
func (m *Manager) revoke(ctx context.Context, c store.Certificate, reason int) error {
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return fmt.Errorf("certificate %s in the store is damaged: %w", c.Serial, err)
	}
	if err := m.Issuer.Revoke(ctx, cert, reason); err != nil {
		return fmt.Errorf("revoking %s at the CA: %w", c.Serial, err)
	}
	c.State = StateRevoked
	c.RevokedAt = m.now().UTC()
	c.RevocationReason = reasonName(reason)
	if err := m.record(ctx, c, "certificate.revoke", fmt.Sprintf("serial=%s reason=%s", c.Serial, c.RevocationReason)); err != nil {
		return fmt.Errorf("recording revocation of %s (revoked at the CA): %w", c.Serial, err)
	}
	return nil
}

func (m *Manager) supersede(ctx context.Context, c store.Certificate) error {
	c.State = StateSuperseded
	if err := m.record(ctx, c, "certificate.supersede", "serial="+c.Serial); err != nil {
		return fmt.Errorf("marking %s superseded: %w", c.Serial, err)
	}
	return nil
}

// certificateRequest is the CSR for a user's key: the CA takes the
// profile from the request, the CSR proves possession of the key.
func certificateRequest(email string, addrs []string, key crypto.Signer) (*x509.CertificateRequest, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: email},
		EmailAddresses: addrs,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("creating certificate request: %w", err)
	}
	return csr, nil
}

// certificateRecorder is implemented by stores that write a certificate
// and its audit event in one transaction (pkg/store).
type certificateRecorder interface {
	RecordCertificate(ctx context.Context, c store.Certificate, e store.AuditEvent) error
}

// record writes c and its audit event: in one transaction where the store
// can (and then a failed audit write fails the step, to be redone), else
// the certificate first and a failed audit write only logged, since the
// certificate already exists at the CA.
func (m *Manager) record(ctx context.Context, c store.Certificate, action, detail string) error {
	if rec, ok := m.Store.(certificateRecorder); ok {
		return rec.RecordCertificate(ctx, c, m.auditEvent(action, c.Email, detail))
	}
	if err := m.Store.PutCertificate(ctx, c); err != nil {
		return err
	}
	m.audit(ctx, action, c.Email, detail)
	return nil
}

// audit records an event; a failing audit log is logged, not fatal, since
// the certificate already exists at the CA and in the store.
func (m *Manager) audit(ctx context.Context, action, subject, detail string) {
	if err := m.Store.Audit(ctx, m.auditEvent(action, subject, detail)); err != nil {
		m.log().Error("audit log write failed", "action", action, "subject", subject, "err", err)
	}
}

func (m *Manager) auditEvent(action, subject, detail string) store.AuditEvent {
	actor := m.Actor
	if actor == "" {
		actor = "pki"
	}
	return store.AuditEvent{Time: m.now().UTC(), Actor: actor, Action: action, Subject: subject, Detail: detail}
}

// SerialHex is the serial number as stored and shown: lower-case hex with
// an even number of digits, the way openssl prints it.
func SerialHex(c *x509.Certificate) string {
	s := c.SerialNumber.Text(16)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

func reasonName(code int) string {
	for name, c := range ReasonCodes {
		if c == code {
			return name
		}
	}
	return fmt.Sprintf("code%d", code)
}

func active(certs []store.Certificate) []store.Certificate {
	var out []store.Certificate
	for _, c := range certs {
		if c.State == StateActive {
			out = append(out, c)
		}
	}
	sortNewestFirst(out)
	return out
}

func sortNewestFirst(certs []store.Certificate) {
	slices.SortStableFunc(certs, func(a, b store.Certificate) int {
		if c := b.NotBefore.Compare(a.NotBefore); c != 0 {
			return c
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
}

func groupByEmail(all []store.Certificate) map[string][]store.Certificate {
	m := map[string][]store.Certificate{}
	for _, c := range all {
		e := strings.ToLower(c.Email)
		m[e] = append(m[e], c)
	}
	for _, v := range m {
		sortNewestFirst(v)
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Identity is what the gateway needs to sign as (and decrypt for) a user.
type Identity struct {
	Key   crypto.Signer // also a crypto.Decrypter for RSA keys
	Cert  *x509.Certificate
	Chain []*x509.Certificate // issuing CA(s), to send along with signatures
}

// Identity returns the user's current key, certificate and chain. It fails
// with store.ErrNotFound (wrapped) when the user has no active certificate,
// so callers can apply "sign = if-key".
func (m *Manager) Identity(ctx context.Context, email string) (Identity, error) {
	c, err := m.Current(ctx, email)
	if err != nil {
		return Identity{}, err
	}
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return Identity{}, fmt.Errorf("certificate %s in the store is damaged: %w", c.Serial, err)
	}
	key, err := m.Key(ctx, c)
	if err != nil {
		return Identity{}, err
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return Identity{}, fmt.Errorf("key %s does not match certificate %s", c.KeyID, c.Serial)
	}
	chain, err := m.Issuer.Intermediates(ctx)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Key: key, Cert: cert, Chain: chain}, nil
}
