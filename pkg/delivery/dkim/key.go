package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Algorithms of the keys sealgate signs with (RFC 6376 rsa-sha256, RFC
// 8463 ed25519-sha256).
const (
	RSA     = "rsa"
	Ed25519 = "ed25519"
)

// MinRSABits is the smallest RSA key accepted (RFC 8301 asks at least
// 1024 of verifiers; large receivers ignore anything below 2048).
const MinRSABits = 2048

// maxKeyFileBytes bounds what is read from key_file (an RSA-4096 PKCS#8
// PEM is about 3.3 KB).
const maxKeyFileBytes = 64 << 10

// ErrKeyFile is wrapped by every error about the key file's content or
// permissions. Its messages say what is wrong, never what the file holds.
var ErrKeyFile = errors.New("dkim key file")

// LoadKey reads a PEM "PRIVATE KEY" (PKCS#8) file holding an RSA key of at
// least MinRSABits or an Ed25519 key. The file must be a regular file
// neither group nor others may read or write: a signing key that leaked
// lets anyone send mail as the domain.
func LoadKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w %s is not a regular file", ErrKeyFile, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w %s has mode %04o, readable or writable by group or others; refusing to use it (run `chmod 600 %s`, and consider the key exposed)", ErrKeyFile, path, perm, path)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	if len(raw) > maxKeyFileBytes {
		return nil, fmt.Errorf("%w %s is larger than %d bytes; not a key", ErrKeyFile, path, maxKeyFileBytes)
	}
	key, err := ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParseKey decodes a PEM PKCS#8 private key. Errors describe the shape of
// the input, never its bytes (x509's parse errors can quote them, so they
// are not wrapped).
func ParseKey(raw []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block (want \"PRIVATE KEY\", PKCS#8; `sealgate dkim keygen` writes one)", ErrKeyFile)
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: PEM block %q; want \"PRIVATE KEY\" (PKCS#8; convert with `openssl pkcs8 -topk8 -nocrypt`)", ErrKeyFile, block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: more than one PEM block; want the private key alone", ErrKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: not a PKCS#8 private key", ErrKeyFile)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits; want at least %d", ErrKeyFile, bits, MinRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("%w: key type %T; want RSA or Ed25519", ErrKeyFile, k)
	}
}

// GenerateKey makes a new key: algorithm RSA (2048 bits) or Ed25519.
func GenerateKey(algorithm string) (crypto.Signer, error) {
	switch algorithm {
	case RSA:
		k, err := rsa.GenerateKey(rand.Reader, MinRSABits)
		if err != nil {
			return nil, fmt.Errorf("dkim: generating RSA key: %w", err)
		}
		return k, nil
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("dkim: generating Ed25519 key: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("dkim: algorithm %q; want %s or %s", algorithm, RSA, Ed25519)
}

// Algorithm names key's algorithm (RSA or Ed25519; "" for another).
func Algorithm(key crypto.Signer) string {
	switch key.Public().(type) {
	case *rsa.PublicKey:
		return RSA
	case ed25519.PublicKey:
		return Ed25519
	}
	return ""
}

// MarshalKey encodes key as PEM PKCS#8, the format LoadKey reads.
func MarshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("dkim: encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteKeyFile writes key to path with mode 0600. It refuses to replace
// an existing file unless force is set; a replaced file is swapped in by
// rename, so a reader never sees half a key.
func WriteKeyFile(path string, key crypto.Signer, force bool) error {
	data, err := MarshalKey(key)
	if err != nil {
		return err
	}
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("dkim: %s exists; refusing to overwrite a signing key whose record may be in DNS (use --force)", path)
			}
			return fmt.Errorf("dkim: writing key: %w", err)
		}
		return finish(f, data, "")
	}
	f, err := os.CreateTemp(dirOf(path), ".dkim-key-*")
	if err != nil {
		return fmt.Errorf("dkim: writing key: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("dkim: writing key: %w", err)
	}
	if err := finish(f, data, path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

func finish(f *os.File, data []byte, renameTo string) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && renameTo != "" {
		err = os.Rename(f.Name(), renameTo)
	}
	if err != nil {
		return fmt.Errorf("dkim: writing key: %w", err)
	}
	return nil
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return "."
}

// RecordValue is the TXT record's value for key's public half:
// "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or, for Ed25519
// (RFC 8463 3.2), "k=ed25519; p=<base64 of the 32 raw key bytes>".
func RecordValue(key crypto.Signer) (string, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("dkim: encoding public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("dkim: key type %T; want RSA or Ed25519", key.Public())
}

// Record is the zone-file line that publishes key under selector and
// domain: `S._domainkey.D. IN TXT "…" "…"`, the value cut into strings of
// at most 255 bytes (one TXT character-string's limit; resolvers join
// them).
func Record(selector, domain string, key crypto.Signer) (string, error) {
	v, err := RecordValue(key)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s._domainkey.%s. IN TXT", selector, strings.TrimSuffix(domain, "."))
	for _, s := range SplitTXT(v) {
		b.WriteString(` "` + s + `"`)
	}
	return b.String(), nil
}

// SplitTXT cuts v into TXT character-strings of at most 255 bytes.
func SplitTXT(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}
