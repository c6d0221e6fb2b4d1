// Package secret encrypts sealgate's secrets at rest (private keys, PDF
// passwords) under a master key kept in a file.
//
// Every secret any package stores goes through a Keyring, so that stealing
// the database alone reveals nothing: the attacker also needs the master key
// file, which lives with restrictive permissions and can be kept elsewhere
// (pki.master_key_file).
//
// # Envelope
//
// A sealed value is
//
//	version (1 byte, 0x01) | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext + tag
//
// The key id is the first 8 bytes of SHA-256 over the key, so a value names
// the key that sealed it and the keyring can hold older keys after a
// rotation. The header (version and key id) and the caller's additional data
// are both authenticated: callers bind a value to its row (for example
// "pdfpw:"+email) so that sealed values cannot be swapped between rows
// without Open failing.
//
// # Master key files
//
// A key file holds 32 random bytes written as 64 hexadecimal characters and a
// newline (surrounding white space is ignored when reading; raw binary is
// not accepted, as 32 raw bytes could not be told from a 16-byte hex key).
// The file must not be readable or writable by group or others (chmod 600).
//
// Rotation: RotateKeyFile keeps the previous key beside the current one as
// "<path>.old.<UTC timestamp>"; LoadOrCreateKeyring reads every
// "<path>.old.*" file as a decrypt-only key. New values are always sealed
// with the current key; once every stored value has been sealed again with
// it (store.Store.Reseal), the old files can be deleted.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// KeySize is the size of a master key in bytes (AES-256).
const KeySize = 32

const (
	envelopeVersion = 0x01
	keyIDSize       = 8
	nonceSize       = 12
	headerSize      = 1 + keyIDSize + nonceSize
	tagSize         = 16
)

// ErrOpen is returned (wrapped) when a sealed value cannot be decrypted: it
// was sealed under a key this keyring does not hold, it was altered, or it
// was sealed for other additional data. It never says which, on purpose:
// the answer is always "do not trust this value".
var ErrOpen = errors.New("secret: cannot open sealed value")

// KeyID names a master key without revealing it: the first 8 bytes of its
// SHA-256.
type KeyID [keyIDSize]byte

// String is the key id in hex, safe to log.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

type key struct {
	id   KeyID
	aead cipher.AEAD
}

// Keyring seals with its current key and opens with the current key or any
// older key it was given. It is safe for concurrent use. A keyring loaded
// from a file (LoadOrCreateKeyring) can Reload it: after `sealgate key
// rotate` a running gateway picks up the new key without a restart, and
// a value sealed under a key it does not know yet makes it look once.
type Keyring struct {
	st atomic.Pointer[keyringState]
	// path is the master key file ("" for a keyring built from bytes).
	path       string
	mu         sync.Mutex // serialises reloads
	lastReload time.Time
}

type keyringState struct {
	current key
	byID    map[KeyID]cipher.AEAD
}

// NewKeyring builds a keyring from raw key bytes: current seals and opens,
// the older keys only open. Every key must be KeySize bytes.
func NewKeyring(current []byte, older ...[]byte) (*Keyring, error) {
	st, err := newKeyringState(current, older...)
	if err != nil {
		return nil, err
	}
	kr := &Keyring{}
	kr.st.Store(st)
	return kr, nil
}

func newKeyringState(current []byte, older ...[]byte) (*keyringState, error) {
	cur, err := newKey(current)
	if err != nil {
		return nil, fmt.Errorf("secret: current key: %w", err)
	}
	st := &keyringState{current: cur, byID: map[KeyID]cipher.AEAD{cur.id: cur.aead}}
	for i, o := range older {
		k, err := newKey(o)
		if err != nil {
			return nil, fmt.Errorf("secret: older key %d: %w", i+1, err)
		}
		if _, dup := st.byID[k.id]; !dup {
			st.byID[k.id] = k.aead
		}
	}
	return st, nil
}

// Reload reads the master key file and its ".old.*" files again and
// reports whether the current key changed. A keyring not loaded from a
// file does nothing. A file that cannot be read leaves the keyring as it
// was (and says why).
func (kr *Keyring) Reload() (changed bool, err error) {
	if kr.path == "" {
		return false, nil
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.lastReload = time.Now()
	current, older, err := readKeyFiles(kr.path)
	if err != nil {
		return false, err
	}
	st, err := newKeyringState(current, older...)
	if err != nil {
		return false, err
	}
	changed = st.current.id != kr.st.Load().current.id
	kr.st.Store(st)
	return changed, nil
}

// reloadForUnknown reloads at most once a second when a value names a
// key this keyring lacks (another process rotated the key file).
func (kr *Keyring) reloadForUnknown() {
	if kr.path == "" {
		return
	}
	kr.mu.Lock()
	recent := time.Since(kr.lastReload) < time.Second
	kr.mu.Unlock()
	if !recent {
		_, _ = kr.Reload()
	}
}

func newKey(raw []byte) (key, error) {
	if len(raw) != KeySize {
		return key{}, fmt.Errorf("key is %d bytes, want %d", len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return key{}, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return key{}, fmt.Errorf("gcm: %w", err)
	}
	return key{id: keyIDOf(raw), aead: aead}, nil
}

func keyIDOf(raw []byte) KeyID {
	sum := sha256.Sum256(raw)
	var id KeyID
	copy(id[:], sum[:keyIDSize])
	return id
}

// CurrentKeyID is the id of the key new values are sealed with.
func (kr *Keyring) CurrentKeyID() KeyID { return kr.st.Load().current.id }

// KeyIDs lists every key id the keyring can open, current first.
func (kr *Keyring) KeyIDs() []KeyID {
	st := kr.st.Load()
	ids := []KeyID{st.current.id}
	for id := range st.byID {
		if id != st.current.id {
			ids = append(ids, id)
		}
	}
	return ids
}

// Seal encrypts plaintext under the current key, binding aad (which is not
// stored: Open must be given the same aad).
func (kr *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	cur := kr.st.Load().current
	out := make([]byte, headerSize, headerSize+len(plaintext)+tagSize)
	out[0] = envelopeVersion
	copy(out[1:], cur.id[:])
	if _, err := io.ReadFull(rand.Reader, out[1+keyIDSize:headerSize]); err != nil {
		return nil, fmt.Errorf("secret: nonce: %w", err)
	}
	nonce := out[1+keyIDSize : headerSize]
	return cur.aead.Seal(out, nonce, plaintext, authData(out[:1+keyIDSize], aad)), nil
}

// Open decrypts a value made by Seal with the same aad. Any failure wraps
// ErrOpen; the error names at most the key id, never key material.
func (kr *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	id, err := SealedKeyID(sealed)
	if err != nil {
		return nil, err
	}
	aead, ok := kr.st.Load().byID[id]
	if !ok {
		kr.reloadForUnknown()
		aead, ok = kr.st.Load().byID[id]
	}
	if !ok {
		return nil, fmt.Errorf("%w: sealed with master key %s, which is not loaded (keep the old key file as <master_key_file>.old.* until every value is resealed)", ErrOpen, id)
	}
	pt, err := aead.Open(nil, sealed[1+keyIDSize:headerSize], sealed[headerSize:], authData(sealed[:1+keyIDSize], aad))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (wrong key, altered value, or value belongs to another record)", ErrOpen)
	}
	return pt, nil
}

// SealedKeyID reports which key sealed a value, so callers can find values
// still sealed under an old key.
func SealedKeyID(sealed []byte) (KeyID, error) {
	var id KeyID
	if len(sealed) < headerSize+tagSize {
		return id, fmt.Errorf("%w: too short (%d bytes)", ErrOpen, len(sealed))
	}
	if sealed[0] != envelopeVersion {
		return id, fmt.Errorf("%w: unknown envelope version %d", ErrOpen, sealed[0])
	}
	copy(id[:], sealed[1:1+keyIDSize])
	return id, nil
}

// NeedsReseal reports whether a sealed value is not under the current key.
func (kr *Keyring) NeedsReseal(sealed []byte) bool {
	id, err := SealedKeyID(sealed)
	return err != nil || id != kr.CurrentKeyID()
}

// authData binds the envelope header (version and key id) to the caller's
// data. The header has a fixed size, so the concatenation is unambiguous.
func authData(header, aad []byte) []byte {
	b := make([]byte, 0, len(header)+len(aad))
	return append(append(b, header...), aad...)
}
