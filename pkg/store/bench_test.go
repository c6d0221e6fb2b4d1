package store

import (
	"database/sql"
	"fmt"
	"testing"
	"time"
)

const benchRows = 10000

// benchCert is a certificate of realistic size (about 1.2 KB of DER).
func benchCert(i int) Certificate {
	email := fmt.Sprintf("user%05d@example.com", i%(benchRows/2))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	der := make([]byte, 1200)
	for j := range der {
		der[j] = byte(i + j)
	}
	return Certificate{
		Serial: fmt.Sprintf("%032x", i), Email: email, Addresses: []string{email, "alias." + email},
		DER: der, KeyID: fmt.Sprintf("key-%d", i), NotBefore: t0, NotAfter: t0.AddDate(1, 0, 0), State: CertActive,
	}
}

// seededStore is a store holding benchRows certificates (two per user),
// written in one transaction: seeding is setup, not what is measured.
func seededStore(b *testing.B, be backend) *Store {
	b.Helper()
	s := be.open(b, testKeyring(b))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for i := range benchRows {
			if err := s.putCertificate(ctx, tx, benchCert(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkPutCertificate: one upsert (a transaction with its addresses)
// into a table already holding 10,000 certificates.
func BenchmarkPutCertificate(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			s := seededStore(b, be)
			i := benchRows
			for b.Loop() {
				if err := s.PutCertificate(ctx, benchCert(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkCertificatesByEmail: one user's certificates (by primary
// address or alias) out of 10,000 rows.
func BenchmarkCertificatesByEmail(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			s := seededStore(b, be)
			i := 0
			for b.Loop() {
				email := fmt.Sprintf("alias.user%05d@example.com", i%(benchRows/2))
				cs, err := s.Certificates(ctx, email)
				if err != nil || len(cs) < 2 {
					b.Fatalf("Certificates(%s) = %d, %v", email, len(cs), err)
				}
				i++
			}
		})
	}
}

// BenchmarkCertificatesAll: listing every one of 10,000 certificates (as
// `pki status` does).
func BenchmarkCertificatesAll(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			s := seededStore(b, be)
			for b.Loop() {
				cs, err := s.Certificates(ctx, "")
				if err != nil || len(cs) < benchRows {
					b.Fatalf("Certificates() = %d, %v", len(cs), err)
				}
			}
		})
	}
}

// BenchmarkClaimQueueEntries: one claim of 16 entries (a node's workers)
// when the queue table holds 10,000 due, unleased inbound entries and 100
// outbound ones: the outbound claim must find its lane's rows through the
// lane index, not by skipping the other lane's; the inbound claim picks 16
// of the 10,000. Each iteration's claim starts just after the previous
// one's leases end, so it takes the same rows again.
func BenchmarkClaimQueueEntries(b *testing.B) {
	for _, be := range backends() {
		s := be.open(b, testKeyring(b))
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		msg := make([]byte, 1024)
		err := s.tx(ctx, func(tx *sql.Tx) error {
			for i := range benchRows + 100 {
				e := QueueEntry{ID: fmt.Sprintf("in%05d", i), Node: "gw1", Lane: LaneInbound, State: "queued",
					Recipients: []string{"user@example.org"}, NextAttempt: base.Add(-time.Duration(i) * time.Second)}
				if i >= benchRows {
					e.ID, e.Lane = fmt.Sprintf("out%05d", i), LaneOutbound
				}
				if err := s.putQueueMessage(ctx, tx, e, msg); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, lane := range []string{LaneOutbound, LaneInbound} {
			b.Run(be.name+"/"+lane, func(b *testing.B) {
				now := base.Add(time.Hour)
				for b.Loop() {
					now = now.Add(time.Microsecond)
					got, err := s.ClaimQueueEntries(ctx, "gw2", lane, now, now, 16)
					if err != nil || len(got) != 16 {
						b.Fatalf("claimed %d, %v", len(got), err)
					}
				}
			})
		}
	}
}
