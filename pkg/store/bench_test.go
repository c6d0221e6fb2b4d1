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
