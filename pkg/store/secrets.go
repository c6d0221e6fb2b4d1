package store

import (
	"bytes"
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Additional data binding each sealed value to its row. A NUL separates
// the kind from the row key, which cannot contain one.
func pdfPasswordAAD(emailKey string) []byte { return []byte("sealgate/pdf-password\x00" + emailKey) }
func privateKeyAAD(id string) []byte        { return []byte("sealgate/private-key\x00" + id) }

// SetPDFPassword stores (or replaces) the password of PDF mail for
// recipient email, sealed at rest. source says where it came from (for
// example "portal", "admin", "generated"). Whoever sets a password this way
// chose it (an admin, the recipient on the portal), so it counts as
// announced; a password nobody has been told yet is stored with
// AddPDFPassword.
func (s *Store) SetPDFPassword(ctx context.Context, email string, password []byte, source string) error {
	key, sealed, err := s.sealPDFPassword("SetPDFPassword", email, password)
	if err != nil {
		return err
	}
	now := s.now().UnixMicro()
	_, err = s.db.ExecContext(ctx, `INSERT INTO pdf_passwords (email_key, sealed, source, updated_at, announced_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (email_key) DO UPDATE SET sealed = excluded.sealed, source = excluded.source,
			updated_at = excluded.updated_at, announced_at = excluded.announced_at`,
		key, sealed, source, now, now)
	if err != nil {
		return fmt.Errorf("store: saving PDF password for %s: %w", email, err)
	}
	return nil
}

// sealPDFPassword checks a password for op and seals it for its row.
func (s *Store) sealPDFPassword(op, email string, password []byte) (key string, sealed []byte, err error) {
	key = normEmail(email)
	if key == "" {
		return "", nil, fmt.Errorf("store: %s: empty email", op)
	}
	if len(password) == 0 {
		return "", nil, fmt.Errorf("store: %s for %s: empty password", op, email)
	}
	sealed, err = s.kr.Seal(password, pdfPasswordAAD(key))
	if err != nil {
		return "", nil, fmt.Errorf("store: sealing PDF password for %s: %w", email, err)
	}
	return key, sealed, nil
}

// AddPDFPassword stores password for recipient email unless one is stored
// already, atomically for every process and node on this database, and
// returns the password in force: password and added=true, or the earlier
// one and added=false. Two gateways generating a first password for the
// same recipient at once thus agree on one. An added password is not
// announced until MarkPDFPasswordAnnounced says so.
func (s *Store) AddPDFPassword(ctx context.Context, email string, password []byte, source string) (stored []byte, added bool, err error) {
	key, sealed, err := s.sealPDFPassword("AddPDFPassword", email, password)
	if err != nil {
		return nil, false, err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO pdf_passwords (email_key, sealed, source, updated_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (email_key) DO NOTHING`,
		key, sealed, source, s.now().UnixMicro())
	if err != nil {
		return nil, false, fmt.Errorf("store: saving PDF password for %s: %w", email, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, false, fmt.Errorf("store: saving PDF password for %s: %w", email, err)
	} else if n == 1 {
		return password, true, nil
	}
	stored, _, err = s.PDFPassword(ctx, email)
	if err != nil {
		return nil, false, err
	}
	return stored, false, nil
}

// PDFPassword returns the recipient's PDF password and its source, or
// ErrNotFound.
func (s *Store) PDFPassword(ctx context.Context, email string) (password []byte, source string, err error) {
	password, source, _, err = s.PDFPasswordState(ctx, email)
	return password, source, err
}

// PDFPasswordState is PDFPassword plus whether the password has been
// announced: false only for a password stored by AddPDFPassword that no
// MarkPDFPasswordAnnounced has confirmed yet, i.e. one that nobody may
// know.
func (s *Store) PDFPasswordState(ctx context.Context, email string) (password []byte, source string, announced bool, err error) {
	return s.readPDFPassword(ctx, nil, email, "")
}

// MarkPDFPasswordAnnounced records that the sender of a message sealed
// with password for recipient email has been told it. It marks only that
// password: marked is false, and nothing changes, when the recipient's
// stored password has been replaced or deleted since (a newer password is
// not announced by a notice about an older one). Marking twice is true
// both times.
func (s *Store) MarkPDFPasswordAnnounced(ctx context.Context, email string, password []byte) (marked bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		stored, _, announced, err := s.readPDFPassword(ctx, tx, email, s.d.forUpdate)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		same := subtle.ConstantTimeCompare(stored, password) == 1
		clear(stored)
		if !same || announced {
			marked = same
			return nil
		}
		if _, err := s.exec(ctx, tx, `UPDATE pdf_passwords SET announced_at = $1 WHERE email_key = $2`,
			s.now().UnixMicro(), normEmail(email)); err != nil {
			return fmt.Errorf("store: marking the PDF password for %s announced: %w", email, err)
		}
		marked = true
		return nil
	})
	return marked, err
}

// readPDFPassword reads and opens the recipient's password row inside tx
// (nil: on its own), the row locked by lock (s.d.forUpdate) if not "".
func (s *Store) readPDFPassword(ctx context.Context, tx *sql.Tx, email, lock string) (password []byte, source string, announced bool, err error) {
	key := normEmail(email)
	var (
		sealed      []byte
		announcedAt sql.NullInt64
	)
	err = s.queryRow(ctx, tx, `SELECT sealed, source, announced_at FROM pdf_passwords WHERE email_key = $1`+lock, key).
		Scan(&sealed, &source, &announcedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", false, fmt.Errorf("store: PDF password for %s: %w", email, ErrNotFound)
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("store: reading PDF password for %s: %w", email, err)
	}
	password, err = s.kr.Open(sealed, pdfPasswordAAD(key))
	if err != nil {
		return nil, "", false, fmt.Errorf("store: PDF password for %s: %w", email, err)
	}
	return password, source, announcedAt.Valid, nil
}

// DeletePDFPassword removes the recipient's PDF password; ErrNotFound if
// there was none.
func (s *Store) DeletePDFPassword(ctx context.Context, email string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM pdf_passwords WHERE email_key = $1`, normEmail(email))
	if err != nil {
		return fmt.Errorf("store: deleting PDF password for %s: %w", email, err)
	}
	return rowsAffected(res, "store: PDF password for "+email)
}

// PutKey stores a private key (PKCS#8 DER) under id, sealed at rest.
// Storing the same key again is a no-op; storing a different key under an
// id in use fails with ErrConflict, because overwriting a private key
// would lose it for good.
func (s *Store) PutKey(ctx context.Context, id string, pkcs8DER []byte) error {
	sealed, err := s.sealKey(id, pkcs8DER)
	if err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error { return s.putKey(ctx, tx, id, pkcs8DER, sealed) })
}

// sealKey checks a key for PutKey and seals it for its row.
func (s *Store) sealKey(id string, pkcs8DER []byte) ([]byte, error) {
	if id == "" {
		return nil, errors.New("store: PutKey: empty key id")
	}
	if len(pkcs8DER) == 0 {
		return nil, fmt.Errorf("store: PutKey %s: empty key", id)
	}
	sealed, err := s.kr.Seal(pkcs8DER, privateKeyAAD(id))
	if err != nil {
		return nil, fmt.Errorf("store: sealing key %s: %w", id, err)
	}
	return sealed, nil
}

// putKey writes a sealed key inside tx: a new row, or nothing if the same
// key is already there, or ErrConflict if a different one is.
func (s *Store) putKey(ctx context.Context, tx *sql.Tx, id string, pkcs8DER, sealed []byte) error {
	var existing []byte
	err := s.queryRow(ctx, tx, `SELECT sealed FROM private_keys WHERE id = $1`, id).Scan(&existing)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = s.exec(ctx, tx, `INSERT INTO private_keys (id, sealed, created_at) VALUES ($1, $2, $3)`,
			id, sealed, s.now().UnixMicro())
		if err != nil {
			return fmt.Errorf("store: saving key %s: %w", id, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("store: reading key %s: %w", id, err)
	}
	old, err := s.kr.Open(existing, privateKeyAAD(id))
	if err != nil {
		return fmt.Errorf("store: key %s exists and cannot be opened to compare: %w", id, err)
	}
	if !bytes.Equal(old, pkcs8DER) {
		return fmt.Errorf("store: key %s already holds a different private key; refusing to overwrite it: %w", id, ErrConflict)
	}
	return nil
}

// Key returns the private key (PKCS#8 DER) stored under id, or ErrNotFound.
func (s *Store) Key(ctx context.Context, id string) ([]byte, error) {
	var sealed []byte
	err := s.queryRow(ctx, nil, `SELECT sealed FROM private_keys WHERE id = $1`, id).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: key %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading key %s: %w", id, err)
	}
	der, err := s.kr.Open(sealed, privateKeyAAD(id))
	if err != nil {
		return nil, fmt.Errorf("store: key %s: %w", id, err)
	}
	return der, nil
}

// KeyIDs lists the ids of the stored private keys that begin with prefix
// (all of them for ""), in no particular order.
func (s *Store) KeyIDs(ctx context.Context, prefix string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM private_keys`)
	if err != nil {
		return nil, fmt.Errorf("store: listing keys: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: listing keys: %w", err)
		}
		if strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: listing keys: %w", err)
	}
	return ids, nil
}

// DeleteKey removes the private key under id; ErrNotFound if there was
// none.
func (s *Store) DeleteKey(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM private_keys WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: deleting key %s: %w", id, err)
	}
	return rowsAffected(res, "store: key "+id)
}

// sealedColumns are the columns holding values sealed under the master
// key (with the row key their additional data is bound to): what Reseal
// reseals and StaleSecrets counts after a key rotation.
var sealedColumns = []struct {
	table, keyCol, col string
	aad                func(string) []byte
}{
	{"pdf_passwords", "email_key", "sealed", pdfPasswordAAD},
	{"private_keys", "id", "sealed", privateKeyAAD},
	{"portal_tokens", "hash", "subject", portalSubjectAAD},
}

// Reseal seals again, under the keyring's current key, every stored secret
// still sealed under an older key, and returns how many it changed. Run it
// after a master key rotation; once it returns, the old key files are no
// longer needed. A value that does not open stops it with an error, so
// nothing is silently dropped.
func (s *Store) Reseal(ctx context.Context) (int, error) {
	total := 0
	for _, t := range sealedColumns {
		type row struct {
			key    string
			sealed []byte
		}
		var stale []row
		rows, err := s.db.QueryContext(ctx, `SELECT `+t.keyCol+`, `+t.col+` FROM `+t.table+` WHERE `+t.col+` IS NOT NULL`)
		if err != nil {
			return total, fmt.Errorf("store: reseal %s: %w", t.table, err)
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.key, &r.sealed); err != nil {
				rows.Close()
				return total, fmt.Errorf("store: reseal %s: %w", t.table, err)
			}
			if s.kr.NeedsReseal(r.sealed) {
				stale = append(stale, r)
			}
		}
		if err := rows.Close(); err != nil {
			return total, fmt.Errorf("store: reseal %s: %w", t.table, err)
		}
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("store: reseal %s: %w", t.table, err)
		}
		for _, r := range stale {
			plain, err := s.kr.Open(r.sealed, t.aad(r.key))
			if err != nil {
				return total, fmt.Errorf("store: reseal %s row %s: %w", t.table, r.key, err)
			}
			fresh, err := s.kr.Seal(plain, t.aad(r.key))
			clear(plain)
			if err != nil {
				return total, fmt.Errorf("store: reseal %s row %s: %w", t.table, r.key, err)
			}
			// Only replace the value we read: a concurrent writer's newer
			// value (already under the current key) wins.
			res, err := s.db.ExecContext(ctx, `UPDATE `+t.table+` SET `+t.col+` = $1 WHERE `+t.keyCol+` = $2 AND `+t.col+` = $3`,
				fresh, r.key, r.sealed)
			if err != nil {
				return total, fmt.Errorf("store: reseal %s row %s: %w", t.table, r.key, err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				total++
			}
		}
	}
	return total, nil
}

// StaleSecrets counts the stored secrets still sealed under an older
// master key (0 once Reseal has run and nothing old was written since).
func (s *Store) StaleSecrets(ctx context.Context) (int, error) {
	n := 0
	for _, c := range sealedColumns {
		table := c.table
		rows, err := s.db.QueryContext(ctx, `SELECT `+c.col+` FROM `+table+` WHERE `+c.col+` IS NOT NULL`)
		if err != nil {
			return n, fmt.Errorf("store: checking %s: %w", table, err)
		}
		for rows.Next() {
			var sealed []byte
			if err := rows.Scan(&sealed); err != nil {
				rows.Close()
				return n, fmt.Errorf("store: checking %s: %w", table, err)
			}
			if len(sealed) > 0 && s.kr.NeedsReseal(sealed) {
				n++
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return n, fmt.Errorf("store: checking %s: %w", table, err)
		}
	}
	return n, nil
}
