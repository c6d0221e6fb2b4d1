package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Certificate states.
const (
	CertActive     = "active"
	CertSuperseded = "superseded"
	CertRevoked    = "revoked"
)

// Certificate is one of our users' certificates, issued by our PKI.
type Certificate struct {
	Serial string
	// Email is the user the certificate belongs to (the directory's
	// primary address).
	Email string
	// Addresses are every address in the certificate; Certificates finds
	// the certificate by any of them.
	Addresses        []string
	DER              []byte
	KeyID            string // id of the private key in PutKey/Key
	NotBefore        time.Time
	NotAfter         time.Time
	State            string // active | superseded | revoked
	RevokedAt        time.Time
	RevocationReason string
	// CreatedAt is set by the first PutCertificate (now, when zero) and
	// kept by later ones.
	CreatedAt time.Time
}

// PutCertificate inserts or updates (by Serial) one of our users'
// certificates.
func (s *Store) PutCertificate(ctx context.Context, c Certificate) error {
	err := s.tx(ctx, func(tx *sql.Tx) error { return s.putCertificate(ctx, tx, c) })
	if err != nil {
		return fmt.Errorf("store: saving certificate %s (%s): %w", c.Serial, c.Email, err)
	}
	return nil
}

// RecordCertificate is PutCertificate and Audit(e) in one transaction:
// an issuance or revocation is never recorded without its audit event,
// nor the event without it.
func (s *Store) RecordCertificate(ctx context.Context, c Certificate, e AuditEvent) error {
	if e.Action == "" {
		return errors.New("store: RecordCertificate: empty audit action")
	}
	return s.tx(ctx, func(tx *sql.Tx) error { return s.recordCertificate(ctx, tx, c, e) })
}

// recordCertificate writes c and e inside tx.
func (s *Store) recordCertificate(ctx context.Context, tx *sql.Tx, c Certificate, e AuditEvent) error {
	if err := s.putCertificate(ctx, tx, c); err != nil {
		return fmt.Errorf("store: saving certificate %s (%s): %w", c.Serial, c.Email, err)
	}
	return s.insertAudit(ctx, tx, e)
}

// putCertificate checks c and writes its row and address index inside tx.
func (s *Store) putCertificate(ctx context.Context, tx *sql.Tx, c Certificate) error {
	switch {
	case c.Serial == "":
		return errors.New("empty serial")
	case normEmail(c.Email) == "":
		return errors.New("empty email")
	case len(c.DER) == 0:
		return errors.New("empty DER")
	}
	switch c.State {
	case CertActive, CertSuperseded, CertRevoked:
	default:
		return fmt.Errorf("state %q is not active, superseded or revoked", c.State)
	}
	addrs := c.Addresses
	if addrs == nil {
		addrs = []string{}
	}
	addrJSON, err := json.Marshal(addrs)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, tx, `INSERT INTO certificates
			(serial, email, email_key, addresses, der, key_id, not_before, not_after, state, revoked_at, revocation_reason, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (serial) DO UPDATE SET
				email = excluded.email, email_key = excluded.email_key, addresses = excluded.addresses,
				der = excluded.der, key_id = excluded.key_id, not_before = excluded.not_before,
				not_after = excluded.not_after, state = excluded.state, revoked_at = excluded.revoked_at,
				revocation_reason = excluded.revocation_reason`,
		c.Serial, c.Email, normEmail(c.Email), string(addrJSON), c.DER, c.KeyID,
		c.NotBefore.UnixMicro(), c.NotAfter.UnixMicro(), c.State, dbTime(c.RevokedAt),
		c.RevocationReason, s.orNow(c.CreatedAt).UnixMicro())
	if err != nil {
		return err
	}
	if _, err := s.exec(ctx, tx, `DELETE FROM certificate_addresses WHERE serial = $1`, c.Serial); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		k := normEmail(a)
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		if _, err := s.exec(ctx, tx, `INSERT INTO certificate_addresses (serial, address_key) VALUES ($1, $2)`, c.Serial, k); err != nil {
			return err
		}
	}
	return nil
}

const certColumns = `serial, email, addresses, der, key_id, not_before, not_after, state, revoked_at, revocation_reason, created_at`

// Certificates returns the certificates whose Email or one of whose
// Addresses is email, newest (latest NotBefore) first; email "" returns
// all of them.
func (s *Store) Certificates(ctx context.Context, email string) ([]Certificate, error) {
	var (
		rows *sql.Rows
		err  error
	)
	const order = ` ORDER BY not_before DESC, created_at DESC, serial DESC`
	if email == "" {
		rows, err = s.db.QueryContext(ctx, `SELECT `+certColumns+` FROM certificates`+order)
	} else {
		// A UNION rather than "email_key = $1 OR serial IN (...)": PostgreSQL
		// plans the OR as a scan of the whole table, the UNION as two
		// index lookups (18 ms -> well under 1 ms with 10,000 rows).
		k := normEmail(email)
		rows, err = s.query(ctx, `SELECT `+certColumns+` FROM certificates
			WHERE serial IN (SELECT serial FROM certificates WHERE email_key = $1
				UNION SELECT serial FROM certificate_addresses WHERE address_key = $1)`+order, k)
	}
	if err != nil {
		return nil, fmt.Errorf("store: listing certificates of %q: %w", email, err)
	}
	defer rows.Close()
	var out []Certificate
	for rows.Next() {
		c, err := scanCertificate(rows)
		if err != nil {
			return nil, fmt.Errorf("store: listing certificates of %q: %w", email, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: listing certificates of %q: %w", email, err)
	}
	return out, nil
}

// CertificateBySerial returns one certificate, or ErrNotFound.
func (s *Store) CertificateBySerial(ctx context.Context, serial string) (Certificate, error) {
	c, err := scanCertificate(s.queryRow(ctx, nil, `SELECT `+certColumns+` FROM certificates WHERE serial = $1`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return Certificate{}, fmt.Errorf("store: certificate %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Certificate{}, fmt.Errorf("store: reading certificate %s: %w", serial, err)
	}
	return c, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanCertificate(r scanner) (Certificate, error) {
	var (
		c                              Certificate
		addrs                          string
		notBefore, notAfter, createdAt int64
		revokedAt                      sql.NullInt64
	)
	if err := r.Scan(&c.Serial, &c.Email, &addrs, &c.DER, &c.KeyID, &notBefore, &notAfter, &c.State,
		&revokedAt, &c.RevocationReason, &createdAt); err != nil {
		return Certificate{}, err
	}
	if err := json.Unmarshal([]byte(addrs), &c.Addresses); err != nil {
		return Certificate{}, fmt.Errorf("certificate %s: addresses column: %w", c.Serial, err)
	}
	c.NotBefore = time.UnixMicro(notBefore).UTC()
	c.NotAfter = time.UnixMicro(notAfter).UTC()
	c.RevokedAt = goTime(revokedAt)
	c.CreatedAt = time.UnixMicro(createdAt).UTC()
	return c, nil
}

// Recipient certificate sources.
const (
	SourceImport  = "import"
	SourceHarvest = "harvest"
)

// RecipientCert is a certificate of someone we send to, imported by an
// admin or harvested from a signed message.
type RecipientCert struct {
	Email string
	// FingerprintSHA256 is the lower-case hex SHA-256 of DER. Left empty,
	// PutRecipientCert computes it; given, it must match.
	FingerprintSHA256 string
	DER               []byte
	Source            string // import | harvest
	// Capabilities is the DER SMIMECapabilities the recipient announced
	// (RFC 8551 2.5.2), nil if unknown.
	Capabilities []byte
	// AddedAt is when the certificate was first stored.
	AddedAt time.Time
}

// PutRecipientCert inserts or updates (by email and fingerprint) a
// recipient's certificate. On update, newer non-nil Capabilities replace
// the old ones (the latest announcement counts), AddedAt is kept, and an
// admin's import is not downgraded to harvest.
func (s *Store) PutRecipientCert(ctx context.Context, c RecipientCert) error {
	key := normEmail(c.Email)
	if key == "" {
		return errors.New("store: PutRecipientCert: empty email")
	}
	if len(c.DER) == 0 {
		return fmt.Errorf("store: PutRecipientCert for %s: empty DER", c.Email)
	}
	if c.Source != SourceImport && c.Source != SourceHarvest {
		return fmt.Errorf("store: PutRecipientCert for %s: source %q is not import or harvest", c.Email, c.Source)
	}
	sum := sha256.Sum256(c.DER)
	fp := hex.EncodeToString(sum[:])
	if c.FingerprintSHA256 != "" && normFingerprint(c.FingerprintSHA256) != fp {
		return fmt.Errorf("store: PutRecipientCert for %s: fingerprint %s does not match the certificate (%s)", c.Email, c.FingerprintSHA256, fp)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO recipient_certs (email_key, fingerprint, email, der, source, capabilities, added_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (email_key, fingerprint) DO UPDATE SET
			email = excluded.email,
			source = CASE WHEN recipient_certs.source = 'import' THEN 'import' ELSE excluded.source END,
			capabilities = COALESCE(excluded.capabilities, recipient_certs.capabilities)`,
		key, fp, c.Email, c.DER, c.Source, nilIfEmpty(c.Capabilities), s.orNow(c.AddedAt).UnixMicro())
	if err != nil {
		return fmt.Errorf("store: saving certificate %s for %s: %w", fp, c.Email, err)
	}
	return nil
}

// RecipientCerts returns the stored certificates of recipient email,
// most recently added first; email "" returns all. None is not an error:
// the result is empty.
func (s *Store) RecipientCerts(ctx context.Context, email string) ([]RecipientCert, error) {
	var (
		rows *sql.Rows
		err  error
	)
	const cols = `SELECT email, fingerprint, der, source, capabilities, added_at FROM recipient_certs`
	const order = ` ORDER BY added_at DESC, fingerprint`
	if email == "" {
		rows, err = s.db.QueryContext(ctx, cols+order)
	} else {
		rows, err = s.query(ctx, cols+` WHERE email_key = $1`+order, normEmail(email))
	}
	if err != nil {
		return nil, fmt.Errorf("store: listing recipient certificates of %q: %w", email, err)
	}
	defer rows.Close()
	var out []RecipientCert
	for rows.Next() {
		var (
			c       RecipientCert
			addedAt int64
		)
		if err := rows.Scan(&c.Email, &c.FingerprintSHA256, &c.DER, &c.Source, &c.Capabilities, &addedAt); err != nil {
			return nil, fmt.Errorf("store: listing recipient certificates of %q: %w", email, err)
		}
		c.AddedAt = time.UnixMicro(addedAt).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: listing recipient certificates of %q: %w", email, err)
	}
	return out, nil
}

func normFingerprint(fp string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(fp)))
}

func nilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// DeleteRecipientCert removes one certificate of recipient email (by its
// SHA-256 fingerprint, any case, colons allowed); ErrNotFound if absent.
func (s *Store) DeleteRecipientCert(ctx context.Context, email, fingerprintSHA256 string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM recipient_certs WHERE email_key = $1 AND fingerprint = $2`,
		normEmail(email), normFingerprint(fingerprintSHA256))
	if err != nil {
		return fmt.Errorf("store: deleting certificate %s of %s: %w", fingerprintSHA256, email, err)
	}
	return rowsAffected(res, "store: certificate "+fingerprintSHA256+" of "+email)
}
