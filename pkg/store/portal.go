package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PortalToken is one link of the recipient portal as the store keeps it:
// the token itself never, only its SHA-256 (hex).
type PortalToken struct {
	Hash      string // hex SHA-256 of the token's bytes
	Kind      string // "invite" | "reset" | "reply"
	Email     string // the recipient the link was mailed to
	Sender    string // who is waiting to write (shown on the page)
	MessageID string // the message a reply link belongs to
	// Subject is the original message's subject (reply links), sealed
	// at rest with the master key.
	Subject   string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero while unused
}

// portalSubjectAAD binds a sealed subject to its link: a subject copied
// into another row does not open.
func portalSubjectAAD(hash string) []byte { return []byte("sealgate/portal-subject\x00" + hash) }

// ErrTokenSpent means the token exists but is used or expired: the
// portal answers it exactly like an unknown one.
var ErrTokenSpent = errors.New("store: portal token used or expired")

// AddPortalToken stores t, unless live is set and the recipient already
// has an unused, unexpired token of the same kind (invite once per
// recipient while a link is live, on every node). added says whether it
// stored t.
func (s *Store) AddPortalToken(ctx context.Context, t PortalToken, live bool) (added bool, err error) {
	if t.Hash == "" || t.Kind == "" || normEmail(t.Email) == "" {
		return false, errors.New("store: AddPortalToken: hash, kind and email are required")
	}
	now := s.orNow(t.CreatedAt)
	var subject []byte
	if t.Subject != "" {
		var err error
		if subject, err = s.kr.Seal([]byte(t.Subject), portalSubjectAAD(t.Hash)); err != nil {
			return false, fmt.Errorf("store: sealing a portal link's subject: %w", err)
		}
	}
	q := `INSERT INTO portal_tokens (hash, kind, email_key, sender, message_id, created_at, expires_at, subject)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8`
	if live {
		q += ` WHERE NOT EXISTS (SELECT 1 FROM portal_tokens WHERE email_key = $3 AND kind = $2 AND used_at IS NULL AND expires_at > $6)`
	}
	res, err := s.exec(ctx, nil, q, t.Hash, t.Kind, normEmail(t.Email), t.Sender, t.MessageID, now.UnixMicro(), t.ExpiresAt.UnixMicro(), subject)
	if err != nil {
		return false, fmt.Errorf("store: saving portal token for %s: %w", t.Email, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: saving portal token for %s: %w", t.Email, err)
	}
	return n == 1, nil
}

// LivePortalToken returns the token with hash if it is unused and not
// expired; ErrNotFound for an unknown hash, ErrTokenSpent for a used or
// expired one.
func (s *Store) LivePortalToken(ctx context.Context, hash string) (PortalToken, error) {
	return s.readPortalToken(ctx, nil, hash, "")
}

func (s *Store) readPortalToken(ctx context.Context, tx *sql.Tx, hash, lock string) (PortalToken, error) {
	var (
		t                PortalToken
		created, expires int64
		used             sql.NullInt64
		subject          []byte
	)
	err := s.queryRow(ctx, tx, `SELECT hash, kind, email_key, sender, message_id, created_at, expires_at, used_at, subject
		FROM portal_tokens WHERE hash = $1`+lock, hash).
		Scan(&t.Hash, &t.Kind, &t.Email, &t.Sender, &t.MessageID, &created, &expires, &used, &subject)
	if errors.Is(err, sql.ErrNoRows) {
		return PortalToken{}, fmt.Errorf("store: portal token: %w", ErrNotFound)
	}
	if err != nil {
		return PortalToken{}, fmt.Errorf("store: reading portal token: %w", err)
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = time.UnixMicro(created).UTC(), time.UnixMicro(expires).UTC(), goTime(used)
	if len(subject) > 0 {
		plain, err := s.kr.Open(subject, portalSubjectAAD(t.Hash))
		if err != nil {
			return PortalToken{}, fmt.Errorf("store: opening a portal link's subject: %w", err)
		}
		t.Subject = string(plain)
	}
	if used.Valid || !s.now().Before(t.ExpiresAt) {
		return t, ErrTokenSpent
	}
	return t, nil
}

// SetPDFPasswordWithToken spends the token with hash (of kind) and stores
// password for the token's recipient, sealed, with source, in one
// transaction: on every node at most one request sets a password with a
// token, and a failed store keeps the token unspent. It returns the spent
// token; ErrNotFound or ErrTokenSpent when it cannot be used.
func (s *Store) SetPDFPasswordWithToken(ctx context.Context, hash, kind string, password []byte, source string) (PortalToken, error) {
	var t PortalToken
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if t, err = s.readPortalToken(ctx, tx, hash, s.d.forUpdate); err != nil {
			return err
		}
		if t.Kind != kind {
			return fmt.Errorf("store: portal token of kind %s used as %s: %w", t.Kind, kind, ErrNotFound)
		}
		now := s.now().UnixMicro()
		res, err := s.exec(ctx, tx, `UPDATE portal_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL`, now, hash)
		if err != nil {
			return fmt.Errorf("store: spending portal token: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return ErrTokenSpent
		}
		key, sealed, err := s.sealPDFPassword("SetPDFPasswordWithToken", t.Email, password)
		if err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO pdf_passwords (email_key, sealed, source, updated_at, announced_at)
			VALUES ($1, $2, $3, $4, $4)
			ON CONFLICT (email_key) DO UPDATE SET sealed = excluded.sealed, source = excluded.source,
				updated_at = excluded.updated_at, announced_at = excluded.announced_at`,
			key, sealed, source, now); err != nil {
			return fmt.Errorf("store: saving PDF password for %s: %w", t.Email, err)
		}
		t.UsedAt = time.UnixMicro(now).UTC()
		return nil
	})
	return t, err
}

// PDFPasswordSetAt returns the source of the recipient's PDF password and
// when it was set; ErrNotFound when there is none. It does not open the
// password.
func (s *Store) PDFPasswordSetAt(ctx context.Context, email string) (source string, at time.Time, err error) {
	var updated int64
	err = s.queryRow(ctx, nil, `SELECT source, updated_at FROM pdf_passwords WHERE email_key = $1`, normEmail(email)).Scan(&source, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, fmt.Errorf("store: PDF password for %s: %w", email, ErrNotFound)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("store: reading PDF password for %s: %w", email, err)
	}
	return source, time.UnixMicro(updated).UTC(), nil
}

// DeleteExpiredPortalTokens removes tokens that expired before before.
func (s *Store) DeleteExpiredPortalTokens(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.exec(ctx, nil, `DELETE FROM portal_tokens WHERE expires_at < $1`, before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("store: deleting expired portal tokens: %w", err)
	}
	return res.RowsAffected()
}

// PortalBlockedUntil returns until when key (a client address, a token)
// is locked out; the zero time when it is not.
func (s *Store) PortalBlockedUntil(ctx context.Context, key string) (time.Time, error) {
	var until int64
	err := s.queryRow(ctx, nil, `SELECT blocked_until FROM portal_failures WHERE key = $1`, key).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("store: reading portal lockout: %w", err)
	}
	if t := time.UnixMicro(until).UTC(); t.After(s.now()) {
		return t, nil
	}
	return time.Time{}, nil
}

// AddPortalFailure counts a failed attempt for key and locks it out for
// delay(failures so far): the caller's growing delay. It returns the
// count and until when key is now blocked.
func (s *Store) AddPortalFailure(ctx context.Context, key string, delay func(failures int) time.Duration) (failures int, until time.Time, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var n int64
		err := s.queryRow(ctx, tx, `SELECT failures FROM portal_failures WHERE key = $1`+s.d.forUpdate, key).Scan(&n)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		n++
		now := s.now()
		until = now.Add(delay(int(n)))
		failures = int(n)
		_, err = s.exec(ctx, tx, `INSERT INTO portal_failures (key, failures, blocked_until, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, blocked_until = excluded.blocked_until, updated_at = excluded.updated_at`,
			key, n, until.UnixMicro(), now.UnixMicro())
		return err
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: counting a portal failure: %w", err)
	}
	return failures, until, nil
}

// ClearPortalFailures forgets key's failures (after a success).
func (s *Store) ClearPortalFailures(ctx context.Context, key string) error {
	if _, err := s.exec(ctx, nil, `DELETE FROM portal_failures WHERE key = $1`, key); err != nil {
		return fmt.Errorf("store: clearing portal failures: %w", err)
	}
	return nil
}

// DeletePortalToken removes the token with hash (an invitation whose mail
// could not be queued, so that the next attempt invites again).
func (s *Store) DeletePortalToken(ctx context.Context, hash string) error {
	if _, err := s.exec(ctx, nil, `DELETE FROM portal_tokens WHERE hash = $1`, hash); err != nil {
		return fmt.Errorf("store: deleting portal token: %w", err)
	}
	return nil
}
