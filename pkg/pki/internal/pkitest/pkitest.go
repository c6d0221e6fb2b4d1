// Package pkitest holds test doubles for pkg/pki's tests: an in-memory
// store with the pkg/store contract's semantics and an AES-GCM sealer.
// Real interop is checked by the peers (openssl, gpgsm, NSS, slapd); these
// only stand in for persistence.
package pkitest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/sealgate/sealgate/pkg/store"
)

// Sealer is AES-256-GCM with a random key: the same construction as
// pkg/secret, without the key file.
type Sealer struct{ aead cipher.AEAD }

// NewSealer makes a sealer with a fresh random key.
func NewSealer() *Sealer {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	b, _ := aes.NewCipher(k)
	a, _ := cipher.NewGCM(b)
	return &Sealer{aead: a}
}

// Seal encrypts with a random nonce prefix.
func (s *Sealer) Seal(pt, aad []byte) ([]byte, error) {
	n := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(n)
	return s.aead.Seal(n, n, pt, aad), nil
}

// Open decrypts what Seal produced.
func (s *Sealer) Open(ct, aad []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(ct) < ns {
		return nil, errors.New("short ciphertext")
	}
	return s.aead.Open(nil, ct[:ns], ct[ns:], aad)
}

// Store is an in-memory pkg/store stand-in. FailPutCertificateAfter, when
// > 0, makes PutCertificate fail after that many calls (crash tests).
type Store struct {
	mu     sync.Mutex
	keys   map[string][]byte
	certs  map[string]store.Certificate
	Events []store.AuditEvent

	FailPutCertificateAfter int
	putCertCalls            int
}

// NewStore makes an empty store.
func NewStore() *Store {
	return &Store{keys: map[string][]byte{}, certs: map[string]store.Certificate{}}
}

func (s *Store) PutKey(_ context.Context, id string, der []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[id] = slices.Clone(der)
	return nil
}

func (s *Store) Key(_ context.Context, id string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("key %s: %w", id, store.ErrNotFound)
	}
	return slices.Clone(k), nil
}

func (s *Store) DeleteKey(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, id)
	return nil
}

// KeyCount is the number of stored keys.
func (s *Store) KeyCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

func (s *Store) PutCertificate(_ context.Context, c store.Certificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putCertCalls++
	if s.FailPutCertificateAfter > 0 && s.putCertCalls > s.FailPutCertificateAfter {
		return errors.New("store: simulated crash")
	}
	s.certs[c.Serial] = c
	return nil
}

func (s *Store) Certificates(_ context.Context, email string) ([]store.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Certificate
	for _, c := range s.certs {
		if email == "" || strings.EqualFold(c.Email, email) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b store.Certificate) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

func (s *Store) CertificateBySerial(_ context.Context, serial string) (store.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.certs[serial]
	if !ok {
		return store.Certificate{}, store.ErrNotFound
	}
	return c, nil
}

func (s *Store) Audit(_ context.Context, e store.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Events = append(s.Events, e)
	return nil
}
