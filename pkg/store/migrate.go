package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// dialect is what little differs between SQLite and PostgreSQL: a few
// column types in the schema and how concurrent migrations are kept apart.
type dialect struct {
	name string
	// ddl replaces the schema's type tokens.
	ddl *strings.Replacer
	// lockMigrations, if not empty, runs first in the migration
	// transaction so that two nodes starting at once migrate one after
	// the other. SQLite needs none: BEGIN IMMEDIATE already serialises.
	lockMigrations string
	// forUpdate locks a row read for a read-modify-write. SQLite has no
	// row locks; its BEGIN IMMEDIATE holds the write lock already.
	forUpdate string
	// skipLocked makes a claim skip rows another transaction has locked.
	// SQLite needs none: one writer at a time.
	skipLocked string
}

var sqliteDialect = &dialect{
	name: "sqlite",
	ddl: strings.NewReplacer(
		"{blob}", "BLOB",
		"{autoid}", "INTEGER PRIMARY KEY AUTOINCREMENT",
	),
}

var postgresDialect = &dialect{
	name: "postgres",
	ddl: strings.NewReplacer(
		"{blob}", "BYTEA",
		"{autoid}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
	),
	// The key is an arbitrary constant reserved for sealgate's migrations.
	lockMigrations: "SELECT pg_advisory_xact_lock(727465012)",
	forUpdate:      " FOR UPDATE",
	skipLocked:     " FOR UPDATE SKIP LOCKED",
}

// migration is one schema step. Steps are append-only: a released step is
// never edited, a change is a new step.
type migration struct {
	version    int
	name       string
	statements []string
}

var migrations = []migration{
	{1, "initial schema", []string{
		`CREATE TABLE pdf_passwords (
			email_key  TEXT PRIMARY KEY,
			sealed     {blob} NOT NULL,
			source     TEXT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		`CREATE TABLE private_keys (
			id         TEXT PRIMARY KEY,
			sealed     {blob} NOT NULL,
			created_at BIGINT NOT NULL
		)`,
		`CREATE TABLE certificates (
			serial            TEXT PRIMARY KEY,
			email             TEXT NOT NULL,
			email_key         TEXT NOT NULL,
			addresses         TEXT NOT NULL,
			der               {blob} NOT NULL,
			key_id            TEXT NOT NULL,
			not_before        BIGINT NOT NULL,
			not_after         BIGINT NOT NULL,
			state             TEXT NOT NULL,
			revoked_at        BIGINT,
			revocation_reason TEXT NOT NULL,
			created_at        BIGINT NOT NULL
		)`,
		`CREATE INDEX certificates_email ON certificates (email_key, not_before)`,
		`CREATE TABLE certificate_addresses (
			serial      TEXT NOT NULL REFERENCES certificates (serial) ON DELETE CASCADE,
			address_key TEXT NOT NULL,
			PRIMARY KEY (serial, address_key)
		)`,
		`CREATE INDEX certificate_addresses_address ON certificate_addresses (address_key)`,
		`CREATE TABLE recipient_certs (
			email_key    TEXT NOT NULL,
			fingerprint  TEXT NOT NULL,
			email        TEXT NOT NULL,
			der          {blob} NOT NULL,
			source       TEXT NOT NULL,
			capabilities {blob},
			added_at     BIGINT NOT NULL,
			PRIMARY KEY (email_key, fingerprint)
		)`,
		`CREATE TABLE audit_log (
			id      {autoid},
			at      BIGINT NOT NULL,
			actor   TEXT NOT NULL,
			action  TEXT NOT NULL,
			subject TEXT NOT NULL,
			detail  TEXT NOT NULL
		)`,
		`CREATE INDEX audit_log_at ON audit_log (at)`,
		`CREATE TABLE queue (
			id           TEXT PRIMARY KEY,
			node         TEXT NOT NULL,
			sender       TEXT NOT NULL,
			recipients   TEXT NOT NULL,
			state        TEXT NOT NULL,
			attempts     BIGINT NOT NULL,
			next_attempt BIGINT,
			last_error   TEXT NOT NULL,
			hold_reason  TEXT NOT NULL,
			size         BIGINT NOT NULL,
			created_at   BIGINT NOT NULL,
			updated_at   BIGINT NOT NULL
		)`,
		`CREATE INDEX queue_due ON queue (state, next_attempt)`,
	}},
	// Listing every certificate newest first (pki status) sorted 10,000
	// rows of DER in a temporary B-tree; reading this index in order
	// avoids the sort.
	{2, "certificates newest-first index", []string{
		`CREATE INDEX certificates_newest ON certificates (not_before, created_at, serial)`,
	}},
	// A generated PDF password may only be used for a message whose
	// sender is told it, and is told only once a message sealed with it
	// has left: announced_at is NULL until then (issue #12). Rows from
	// before this step were announced when they were generated (the old
	// code queued the notice at once), so they count as announced.
	{3, "pdf password announced", []string{
		`ALTER TABLE pdf_passwords ADD COLUMN announced_at BIGINT`,
		`UPDATE pdf_passwords SET announced_at = updated_at`,
	}},
	// Delivery events get their own table (issue #14): the SOC pages
	// through them by id, oldest first, so the id order must be the
	// commit order (see insertDeliveryEvent), and they are filtered by
	// recipient, queue id and time. Bearer tokens for the HTTP API are
	// kept as SHA-256 hashes only.
	{4, "delivery events and api tokens", []string{
		`CREATE TABLE delivery_events (
			id            {autoid},
			at            BIGINT NOT NULL,
			node          TEXT NOT NULL,
			queue_id      TEXT NOT NULL,
			message_id    TEXT NOT NULL,
			sender        TEXT NOT NULL,
			recipient     TEXT NOT NULL,
			recipient_key TEXT NOT NULL,
			outcome       TEXT NOT NULL,
			method        TEXT NOT NULL,
			signed        BIGINT NOT NULL,
			rule          TEXT NOT NULL,
			attempt       BIGINT NOT NULL,
			reason        TEXT NOT NULL,
			tls           TEXT NOT NULL,
			received_at   BIGINT
		)`,
		`CREATE INDEX delivery_events_at ON delivery_events (at)`,
		`CREATE INDEX delivery_events_recipient ON delivery_events (recipient_key, id)`,
		`CREATE INDEX delivery_events_queue ON delivery_events (queue_id, id)`,
		`CREATE TABLE api_tokens (
			name         TEXT PRIMARY KEY,
			hash         TEXT NOT NULL UNIQUE,
			scopes       TEXT NOT NULL,
			created_at   BIGINT NOT NULL,
			revoked_at   BIGINT,
			last_used_at BIGINT
		)`,
	}},
	// The recipient portal (issue 13): links carry a random token, the
	// store keeps only its SHA-256, bound to the recipient (and the
	// message for replies), expiring, used at most once where it sets
	// something; failed attempts per client address and per token, so
	// every gateway node sees the same lockout.
	{5, "portal tokens", []string{
		`CREATE TABLE portal_tokens (
			hash       TEXT PRIMARY KEY,
			kind       TEXT NOT NULL,
			email_key  TEXT NOT NULL,
			sender     TEXT NOT NULL,
			message_id TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			expires_at BIGINT NOT NULL,
			used_at    BIGINT
		)`,
		`CREATE INDEX portal_tokens_live ON portal_tokens (email_key, kind, expires_at)`,
		`CREATE TABLE portal_failures (
			key           TEXT PRIMARY KEY,
			failures      BIGINT NOT NULL,
			blocked_until BIGINT NOT NULL,
			updated_at    BIGINT NOT NULL
		)`,
	}},
	// Webhook endpoints read delivery_events as their outbox (issue #14):
	// each [[webhooks]] entry, by name, remembers the last event id it
	// delivered, advanced only after a 2xx and only from the value the
	// sender read (compare and set), so two nodes never move it backwards
	// or past an event one of them has not sent. The other columns are for
	// people: when it was last tried, why it failed, since when.
	{6, "webhook cursors", []string{
		`CREATE TABLE webhook_cursors (
			name          TEXT PRIMARY KEY,
			last_id       BIGINT NOT NULL,
			updated_at    BIGINT NOT NULL,
			attempt_at    BIGINT,
			failing_since BIGINT,
			failures      BIGINT NOT NULL,
			last_error    TEXT NOT NULL,
			node          TEXT NOT NULL
		)`,
	}},
	// Secure replies (issue 13): a reply link shows the original subject,
	// which is message content, so it is kept sealed like a PDF password
	// (NULL for other kinds of link).
	{7, "portal reply subject", []string{
		`ALTER TABLE portal_tokens ADD COLUMN subject {blob}`,
	}},
	// Several nodes on one PostgreSQL (issue 17): the message itself, sealed
	// as the spool seals its files, lives in its queue row (NULL: the
	// message is in the spool files of the entry's node, as before), and a
	// node works on a row only while it holds its lease (lease_node until
	// lease_until), so a node that dies loses its work to the others.
	{8, "queue messages and leases", []string{
		`ALTER TABLE queue ADD COLUMN message {blob}`,
		`ALTER TABLE queue ADD COLUMN lease_node TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE queue ADD COLUMN lease_until BIGINT`,
		`CREATE INDEX queue_claim ON queue (next_attempt, lease_until)`,
	}},
	// Direct delivery (issue 15): MTA-STS policies (per max_age, keyed by
	// the TXT record's id) and the TLS check's per-domain verdicts, shared
	// by every node and kept across restarts, so that neither the policy
	// fetch nor the probe runs per message.
	{9, "tls cache", []string{
		`CREATE TABLE tls_cache (
			kind       TEXT NOT NULL,
			domain     TEXT NOT NULL,
			id         TEXT NOT NULL,
			data       {blob} NOT NULL,
			fetched_at BIGINT NOT NULL,
			expires_at BIGINT NOT NULL,
			PRIMARY KEY (kind, domain)
		)`,
	}},
	// The inbound queue on PostgreSQL (issue 17): both queues keep their
	// messages in the one queue table, so each row says which queue it
	// belongs to (lane), and a claim, lease renewal, recovery and list ask
	// for their own lane only: the outbound queue must never deliver an
	// inbound message (a different relay: it would leave for the internet
	// instead of the internal mail server), nor the other way round. The
	// inbound queue used to tell its rows apart by the node name
	// "<node>/inbound"; those rows get the lane and the plain node name.
	// The claim index leads with the lane.
	{10, "queue lanes", []string{
		`ALTER TABLE queue ADD COLUMN lane TEXT NOT NULL DEFAULT 'outbound'`,
		`UPDATE queue SET lane = 'inbound', node = substr(node, 1, length(node) - 8) WHERE node LIKE '%/inbound'`,
		`UPDATE queue SET lease_node = substr(lease_node, 1, length(lease_node) - 8) WHERE lease_node LIKE '%/inbound'`,
		`DROP INDEX queue_claim`,
		`CREATE INDEX queue_lane_claim ON queue (lane, next_attempt, lease_until)`,
		`CREATE INDEX queue_lane_node ON queue (lane, node)`,
	}},
	// Several nodes on one database (issue 17) with the embedded CA: each
	// node keeps the CA in its own data_dir, so a node started with an
	// empty one would create a second CA and issue, revoke and publish
	// certificates the others' CRLs and chains know nothing of. The
	// first node records its root here; every node compares before it
	// issues anything (one row: id 1).
	{11, "embedded ca", []string{
		`CREATE TABLE embedded_ca (
			id          INTEGER PRIMARY KEY CHECK (id = 1),
			root_sha256 TEXT NOT NULL,
			node        TEXT NOT NULL,
			recorded_at BIGINT NOT NULL
		)`,
	}},
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

const createSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    BIGINT PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`

// migrate applies every missing step, each in its own transaction together
// with its schema_migrations row, so a crash leaves the schema at a step
// boundary. It refuses a database written by a newer sealgate.
func (s *Store) migrate(ctx context.Context) error {
	// Up to date (the usual case) is settled by a read: the migration
	// transactions take the write lock, which every CLI command would
	// otherwise queue for behind a busy gateway or rollout.
	var latest sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&latest); err == nil &&
		latest.Valid && latest.Int64 == int64(SchemaVersion()) {
		return nil
	}
	for _, m := range migrations {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if s.d.lockMigrations != "" {
				if _, err := tx.ExecContext(ctx, s.d.lockMigrations); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, createSchemaMigrations); err != nil {
				return err
			}
			var latest sql.NullInt64
			if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&latest); err != nil {
				return err
			}
			if latest.Int64 > int64(SchemaVersion()) {
				return fmt.Errorf("database schema is version %d, newer than this sealgate knows (%d): upgrade sealgate", latest.Int64, SchemaVersion())
			}
			if latest.Valid && latest.Int64 >= int64(m.version) {
				return nil
			}
			for _, stmt := range m.statements {
				if _, err := tx.ExecContext(ctx, s.d.ddl.Replace(stmt)); err != nil {
					return fmt.Errorf("%w\nin: %s", err, firstLine(stmt))
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, s.now().UnixMicro())
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migration %d (%s) on %s: %w", m.version, m.name, s.d.name, err)
		}
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
