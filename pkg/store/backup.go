package store

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Tables a backup leaves out: the schema bookkeeping (the restoring store
// creates its own).
var dumpExcluded = []string{"schema_migrations"}

// QueueDumpRow is what Dump's keep function learns about one queue row.
// The row itself is dumped generically (every column, by name), so a
// column added to the queue later is backed up without a change here.
type QueueDumpRow struct {
	ID    string
	Node  string
	Lane  string // LaneOutbound, LaneInbound, "" in rows from before lanes
	State string
	// Stored says the sealed message is in the row (PostgreSQL); else it
	// is a spool file on the node that accepted it.
	Stored bool
}

// DumpOptions tune Dump.
type DumpOptions struct {
	// KeepQueue decides, inside the dump's read transaction, whether a
	// queue row goes into the dump (the caller copies a spool file there
	// and leaves out an entry whose file is gone: delivered meanwhile). An
	// error fails the dump. Nil: every queue row is kept.
	KeepQueue func(QueueDumpRow) (bool, error)
}

// DumpTable is one table of a dump: its name and its rows, as JSON lines.
type DumpTable struct {
	Name string
	Rows int
}

// Dump writes every table, the queue with its sealed messages included,
// in one read transaction, so the tables agree with each other even while
// a gateway writes. Each row is a JSON object; byte values are
// {"b64": "..."}, NULL is null. Sealed secrets and messages stay sealed:
// the dump holds no plaintext key, password or message. open is called
// once per table, in name order.
func (s *Store) Dump(ctx context.Context, open func(table string) (io.Writer, error), opts DumpOptions) ([]DumpTable, error) {
	txo := &sql.TxOptions{ReadOnly: true}
	if s.d == postgresDialect {
		txo.Isolation = sql.LevelRepeatableRead
	}
	tx, err := s.db.BeginTx(ctx, txo)
	if err != nil {
		return nil, fmt.Errorf("store: dump: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	tables, err := s.tableNames(ctx, tx)
	if err != nil {
		return nil, err
	}
	var out []DumpTable
	for _, t := range tables {
		if slices.Contains(dumpExcluded, t) {
			continue
		}
		w, err := open(t)
		if err != nil {
			return nil, err
		}
		var keep func(map[string]any) (bool, error)
		if t == "queue" && opts.KeepQueue != nil {
			keep = func(row map[string]any) (bool, error) { return opts.KeepQueue(queueDumpRow(row)) }
		}
		n, err := dumpTable(ctx, tx, t, w, keep)
		if err != nil {
			return nil, fmt.Errorf("store: dumping %s: %w", t, err)
		}
		out = append(out, DumpTable{Name: t, Rows: n})
	}
	return out, nil
}

func (s *Store) tableNames(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]string, error) {
	query := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	if s.d == postgresDialect {
		query = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
	}
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("store: listing tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("store: listing tables: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// queueDumpRow reads the columns KeepQueue needs from a dumped row, by
// name.
func queueDumpRow(row map[string]any) QueueDumpRow {
	str := func(c string) string { v, _ := row[c].(string); return v }
	return QueueDumpRow{ID: str("id"), Node: str("node"), Lane: str("lane"), State: str("state"), Stored: row["message"] != nil}
}

// dumpTable writes table's rows that keep (nil: all) admits.
func dumpTable(ctx context.Context, tx *sql.Tx, table string, w io.Writer, keep func(map[string]any) (bool, error)) (int, error) {
	// The name comes from the database's own catalog, not from input.
	rows, err := tx.QueryContext(ctx, `SELECT * FROM `+table)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		row := make(map[string]any, len(cols))
		for i, c := range cols {
			switch v := vals[i].(type) {
			case []byte:
				row[c] = map[string]string{"b64": base64.StdEncoding.EncodeToString(v)}
			case nil, int64, string, float64, bool:
				row[c] = v
			default:
				return n, fmt.Errorf("column %s: unexpected type %T", c, v)
			}
		}
		if keep != nil {
			ok, err := keep(row)
			if err != nil {
				return n, err
			}
			if !ok {
				continue
			}
		}
		if err := enc.Encode(row); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// ErrNotEmpty is returned by Restore when the store already holds data.
var ErrNotEmpty = errors.New("store: not empty")

// Restore loads a dump into this store, which must be empty (freshly
// created: its schema at this build's version), in one transaction: a
// failure leaves it empty. tables maps each dumped table to its rows; a
// table the dump lacks stays empty (a dump made before the queue was
// backed up has none), a table this schema lacks is an error. Restored
// queue entries are unleased and due now (freeRestoredQueue).
func (s *Store) Restore(ctx context.Context, tables map[string]io.Reader) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		have, err := s.tableNames(ctx, tx)
		if err != nil {
			return err
		}
		for _, t := range have {
			if t == "schema_migrations" {
				continue
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t).Scan(&n); err != nil {
				return fmt.Errorf("store: restore: counting %s: %w", t, err)
			}
			if n > 0 {
				return fmt.Errorf("%w: table %s has %d rows; restore only into a new data_dir or database", ErrNotEmpty, t, n)
			}
		}
		names := make([]string, 0, len(tables))
		for t := range tables {
			names = append(names, t)
		}
		slices.Sort(names)
		// certificate_addresses refers to certificates: parents first.
		slices.SortStableFunc(names, func(a, b string) int {
			return strings.Compare(dependsRank(a), dependsRank(b))
		})
		for _, t := range names {
			if !slices.Contains(have, t) || slices.Contains(dumpExcluded, t) {
				return fmt.Errorf("store: restore: the backup has a table %q this sealgate does not know", t)
			}
			if err := s.restoreTable(ctx, tx, t, tables[t]); err != nil {
				return fmt.Errorf("store: restoring %s: %w", t, err)
			}
		}
		return s.freeRestoredQueue(ctx, tx)
	})
}

// freeRestoredQueue makes the restored queue this node's to work on: no
// lease survives (the nodes that held them are gone), and every scheduled
// entry is due now at the latest, so mail that waited through the outage
// goes out at the first poll. The node column stays: it tells the admin
// where a message was accepted, and the queue adopts spool files by where
// they lie, not by that name.
func (s *Store) freeRestoredQueue(ctx context.Context, tx *sql.Tx) error {
	now := s.now().UnixMicro()
	if _, err := tx.ExecContext(ctx, `UPDATE queue SET lease_node = '', lease_until = NULL,
		next_attempt = CASE WHEN next_attempt IS NOT NULL AND next_attempt > $1 THEN $1 ELSE next_attempt END`, now); err != nil {
		return fmt.Errorf("store: restore: freeing the queue's leases: %w", err)
	}
	return nil
}

// dependsRank orders tables with foreign keys after the ones they name.
func dependsRank(table string) string {
	if table == "certificate_addresses" {
		return "1"
	}
	return "0"
}

func (s *Store) restoreTable(ctx context.Context, tx *sql.Tx, table string, r io.Reader) error {
	identity := false
	if s.d == postgresDialect {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'YES'`, table).Scan(&n); err != nil {
			return err
		}
		identity = n > 0
	}
	dec := json.NewDecoder(r)
	dec.UseNumber()
	for line := 1; ; line++ {
		var row map[string]any
		err := dec.Decode(&row)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("row %d: %w", line, err)
		}
		cols := make([]string, 0, len(row))
		for c := range row {
			if !isIdentifier(c) {
				return fmt.Errorf("row %d: column name %q", line, c)
			}
			cols = append(cols, c)
		}
		slices.Sort(cols)
		args := make([]any, len(cols))
		marks := make([]string, len(cols))
		for i, c := range cols {
			v, err := restoreValue(row[c])
			if err != nil {
				return fmt.Errorf("row %d, column %s: %w", line, c, err)
			}
			args[i] = v
			marks[i] = fmt.Sprintf("$%d", i+1)
		}
		q := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `)`
		if identity {
			q += ` OVERRIDING SYSTEM VALUE`
		}
		q += ` VALUES (` + strings.Join(marks, ", ") + `)`
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("row %d: %w", line, err)
		}
	}
	if identity {
		// The next id continues after the restored ones.
		if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence($1, 'id'), COALESCE((SELECT MAX(id) FROM `+table+`), 0) + 1, false)`, table); err != nil {
			return fmt.Errorf("advancing the id sequence: %w", err)
		}
	}
	return nil
}

func restoreValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, string, bool:
		return v, nil
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n, nil
		}
		return v.Float64()
	case map[string]any:
		b, ok := v["b64"].(string)
		if !ok || len(v) != 1 {
			return nil, errors.New(`an object that is not {"b64": ...}`)
		}
		return base64.StdEncoding.DecodeString(b)
	}
	return nil, fmt.Errorf("unexpected JSON value %T", v)
}

// isIdentifier admits the column names our schema uses; a backup file is
// outside input and must not smuggle SQL in through a key.
func isIdentifier(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
