package portal

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// tokenBytes is the entropy of every portal link: 256 bits, so that
// guessing one is hopeless and lockout is only a second line.
const tokenBytes = 32

// tokenLen is the length of a token in a link (unpadded base64url).
var tokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// errBadToken is any token that is not the exact shape the portal issues.
var errBadToken = errors.New("portal: malformed token")

// newToken returns a fresh token for a link and the hash the store keeps.
func newToken() (raw, hash string, err error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("portal: token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), hashBytes(b), nil
}

// tokenHash checks a token from a request and returns its store hash. It
// accepts only what newToken writes: exactly 43 base64url characters
// decoding to 32 bytes (no padding, no other alphabet), so nothing else
// reaches the store.
func tokenHash(raw string) (string, error) {
	if len(raw) != tokenLen {
		return "", errBadToken
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(raw)
	if err != nil || len(b) != tokenBytes {
		return "", errBadToken
	}
	return hashBytes(b), nil
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
