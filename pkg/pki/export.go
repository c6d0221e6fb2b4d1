package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"unicode/utf16"

	"software.sslmate.com/src/go-pkcs12"
)

// P12Profile selects the PKCS#12 encryption.
type P12Profile string

// PKCS#12 profiles offered by `cert export --p12`.
const (
	// P12Legacy is PBE-SHA1-3DES with a SHA-1 MAC: what gpgsm 2.2,
	// Windows before Server 2019 and every Outlook import. The default,
	// because a file that does not import is no use.
	P12Legacy P12Profile = "legacy"
	// P12Modern is PBES2 AES-256-CBC with PBKDF2-SHA256 and a SHA-256 MAC
	// (OpenSSL 3's default): Thunderbird and current Windows read it.
	P12Modern P12Profile = "modern"
)

// ExportPKCS12 packs the key, its certificate and the chain (issuing CA,
// root) into a password-protected PKCS#12 file.
func ExportPKCS12(key crypto.Signer, leaf *x509.Certificate, chain []*x509.Certificate, password string, profile P12Profile) ([]byte, error) {
	if password == "" {
		return nil, errors.New("refusing to export a private key without a password")
	}
	if !publicKeyMatches(key, leaf) {
		return nil, errors.New("private key does not match the certificate")
	}
	enc := pkcs12.LegacyDES
	switch profile {
	case P12Legacy, "":
	case P12Modern:
		enc = pkcs12.Modern2023
	default:
		return nil, fmt.Errorf("unknown PKCS#12 profile %q (use legacy or modern)", profile)
	}
	if enc != pkcs12.LegacyDES {
		der, err := enc.Encode(key, leaf, chain, password)
		if err != nil {
			return nil, fmt.Errorf("encoding PKCS#12: %w", err)
		}
		return der, nil
	}
	// gpgsm (minip12.c) mis-derives the PKCS#12 3DES key for a few
	// percent of random salts (an intermediate value with a leading zero
	// byte is written unpadded), and then rejects the file as "bad
	// passphrase". Salts are ours to choose: draw again until every salt
	// is one gpgsm derives correctly.
	bmp := bmpPassword(password)
	for attempt := 0; attempt < 100; attempt++ {
		rec := &recordingReader{r: rand.Reader}
		der, err := enc.WithRand(rec).Encode(key, leaf, chain, password)
		if err != nil {
			return nil, fmt.Errorf("encoding PKCS#12: %w", err)
		}
		if gpgsmDerivesKey(rec.buf, bmp, legacyIterations) {
			return der, nil
		}
	}
	return nil, errors.New("encoding PKCS#12: no gpgsm-compatible salt in 100 draws")
}

// legacyIterations is go-pkcs12's LegacyDES PBE iteration count.
const legacyIterations = 2048

// recordingReader keeps what the encoder drew (its salts, 8 bytes each).
type recordingReader struct {
	r   io.Reader
	buf []byte
}

func (rr *recordingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.buf = append(rr.buf, p[:n]...)
	return n, err
}

// bmpPassword is the PKCS#12 password encoding: UTF-16BE plus two zero bytes.
func bmpPassword(pw string) []byte {
	var out []byte
	for _, r := range utf16.Encode([]rune(pw)) {
		out = append(out, byte(r>>8), byte(r))
	}
	return append(out, 0, 0)
}

// gpgsmDerivesKey reports whether every 8-byte salt in drawn leads to a
// 3DES key (RFC 7292 B.2, SHA-1, ID 1, 24 bytes = two rounds) whose one
// I-block update has no leading zero byte: the case gpgsm gets wrong.
func gpgsmDerivesKey(drawn, bmpPw []byte, iterations int) bool {
	const v = 64
	fill := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	mod := new(big.Int).Lsh(big.NewInt(1), v*8)
	for off := 0; off+8 <= len(drawn); off += 8 {
		in := append(bytes.Repeat([]byte{1}, v), fill(drawn[off:off+8])...)
		in = append(in, fill(bmpPw)...)
		h := sha1.Sum(in)
		for i := 1; i < iterations; i++ {
			h = sha1.Sum(h[:])
		}
		b1 := new(big.Int).SetBytes(fill(h[:])[:v])
		b1.Add(b1, big.NewInt(1))
		for j := v; j < len(in); j += v {
			ij := new(big.Int).SetBytes(in[j : j+v])
			ij.Add(ij, b1).Mod(ij, mod)
			if ij.BitLen() <= (v-1)*8 {
				return false
			}
		}
	}
	return true
}

func publicKeyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}
