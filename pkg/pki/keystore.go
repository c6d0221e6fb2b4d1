package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

// KeyStorage persists PKCS#8 private keys sealed at rest; *store.Store
// satisfies it (it seals with the master keyring inside).
type KeyStorage interface {
	PutKey(ctx context.Context, id string, pkcs8DER []byte) error
	Key(ctx context.Context, id string) ([]byte, error)
	DeleteKey(ctx context.Context, id string) error
}

// KeyType is a supported per-user key algorithm (pki.key_type).
type KeyType string

// The values accepted for pki.key_type.
const (
	RSA2048 KeyType = "rsa2048"
	RSA3072 KeyType = "rsa3072"
	RSA4096 KeyType = "rsa4096"
	P256    KeyType = "p256"
	P384    KeyType = "p384"
)

// ParseKeyType validates a pki.key_type value ("" means rsa2048, the one
// every S/MIME client decrypts with: gpgsm and NSS handle no ECDH).
func ParseKeyType(s string) (KeyType, error) {
	switch KeyType(s) {
	case "":
		return RSA2048, nil
	case RSA2048, RSA3072, RSA4096, P256, P384:
		return KeyType(s), nil
	}
	return "", fmt.Errorf("unknown key type %q (use rsa2048, rsa3072, rsa4096, p256 or p384)", s)
}

// Generate makes a fresh private key of this type.
func (k KeyType) Generate() (crypto.Signer, error) {
	switch k {
	case RSA2048, "":
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case P256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case P384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	return nil, fmt.Errorf("unknown key type %q", k)
}

// Keystore hands out users' private keys as crypto.Signer (and, for RSA,
// crypto.Decrypter). Callers depend on those interfaces only, so an HSM
// backed keystore can replace this one.
type Keystore struct {
	storage KeyStorage
}

// NewKeystore wraps a key storage.
func NewKeystore(s KeyStorage) *Keystore { return &Keystore{storage: s} }

// Put stores key under id, sealed by the storage.
func (ks *Keystore) Put(ctx context.Context, id string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", id, err)
	}
	if err := ks.storage.PutKey(ctx, id, der); err != nil {
		return fmt.Errorf("storing key %s: %w", id, err)
	}
	return nil
}

// Signer loads the key stored under id.
func (ks *Keystore) Signer(ctx context.Context, id string) (crypto.Signer, error) {
	der, err := ks.storage.Key(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("loading key %s: %w", id, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("key %s is damaged: %w", id, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key %s is not a signing key", id)
	}
	return s, nil
}

// Decrypter loads the key stored under id for decryption; EC keys do key
// agreement instead and are reported as unsupported here.
func (ks *Keystore) Decrypter(ctx context.Context, id string) (crypto.Decrypter, error) {
	s, err := ks.Signer(ctx, id)
	if err != nil {
		return nil, err
	}
	d, ok := s.(crypto.Decrypter)
	if !ok {
		return nil, fmt.Errorf("key %s (%T) cannot decrypt", id, s)
	}
	return d, nil
}
