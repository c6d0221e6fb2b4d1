package pdfmail

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
)

// The standard security handler of PDF 2.0, revision 6 (ISO 32000-2
// §7.6.4.3.3-4): AES-256 with a random file key, wrapped once for the user
// password (U, UE) and once for the owner password (O, OE). pdfcpu can
// compute these entries, but spends four times as long on it as this code
// (it allocates the 64-fold repeated block anew in every round); assemble
// hands pdfcpu the finished entries instead.

// r6MaxPassword is where Algorithm 2.A truncates a password (in bytes,
// after SASLprep): readers compare only that much.
const r6MaxPassword = 127

// r6Entries are the values of the encryption dictionary and the file key
// they protect.
type r6Entries struct {
	U, O   [48]byte // hash (32) + validation salt (8) + key salt (8)
	UE, OE [32]byte // the file key encrypted with the hash of the key salt
	Perms  [16]byte // the permissions, encrypted with the file key
	Key    [32]byte // the file key: every string and stream is encrypted with it
}

// newR6Entries draws a random file key and random salts (crypto/rand) and
// derives U, UE, O, OE and Perms for the passwords and permission bits p.
func newR6Entries(userPW, ownerPW string, p int32) (*r6Entries, error) {
	var e r6Entries
	var salts [32]byte
	if _, err := rand.Read(e.Key[:]); err != nil {
		return nil, fmt.Errorf("file key: %w", err)
	}
	if _, err := rand.Read(salts[:]); err != nil {
		return nil, fmt.Errorf("salts: %w", err)
	}
	copy(e.U[32:], salts[:16])
	copy(e.O[32:], salts[16:])
	upw, opw := r6Password(userPW), r6Password(ownerPW)

	var h r6Hasher
	copy(e.U[:32], h.hash(upw, e.U[32:40], nil))
	if err := wrapKey(e.UE[:], h.hash(upw, e.U[40:48], nil), e.Key[:]); err != nil {
		return nil, err
	}
	copy(e.O[:32], h.hash(opw, e.O[32:40], e.U[:]))
	if err := wrapKey(e.OE[:], h.hash(opw, e.O[40:48], e.U[:]), e.Key[:]); err != nil {
		return nil, err
	}

	// Algorithm 2.10: P (low byte first), 0xFF x4, 'T' (metadata is
	// encrypted too), "adb", four random bytes; one AES-256 block.
	var perms [16]byte
	binary.LittleEndian.PutUint32(perms[0:4], uint32(p))
	copy(perms[4:12], []byte{0xFF, 0xFF, 0xFF, 0xFF, 'T', 'a', 'd', 'b'})
	if _, err := rand.Read(perms[12:]); err != nil {
		return nil, fmt.Errorf("perms: %w", err)
	}
	block, err := aes.NewCipher(e.Key[:])
	if err != nil {
		return nil, fmt.Errorf("perms: %w", err)
	}
	block.Encrypt(e.Perms[:], perms[:])
	return &e, nil
}

// r6Password truncates a (SASLprep'd, UTF-8) password as Algorithm 2.A
// step a does.
func r6Password(pw string) []byte {
	b := []byte(pw)
	if len(b) > r6MaxPassword {
		b = b[:r6MaxPassword]
	}
	return b
}

// wrapKey encrypts the 32-byte file key with AES-256 in CBC mode, a zero
// IV and no padding, under the intermediate key kek (Algorithm 8 step b,
// Algorithm 9 step b).
func wrapKey(dst, kek, key []byte) error {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return fmt.Errorf("wrap file key: %w", err)
	}
	var iv [aes.BlockSize]byte
	cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(dst, key)
	return nil
}

// r6Hasher computes Algorithm 2.B, reusing its buffers across calls. Not
// safe for concurrent use: each seal has its own.
type r6Hasher struct {
	block []byte // password || K || udata
	k1    []byte // block repeated 64 times, encrypted in place into E
	k     [64]byte
}

// hash is Algorithm 2.B (ISO 32000-2 §7.6.4.3.4) for password pw, the
// 8-byte salt and udata (the 48-byte U for the owner's hashes, nil for
// the user's). It returns 32 bytes, valid until the next call.
func (h *r6Hasher) hash(pw, salt, udata []byte) []byte {
	d := sha256.New()
	d.Write(pw)
	d.Write(salt)
	d.Write(udata)
	k := d.Sum(h.k[:0])
	for round := 0; ; round++ {
		// a) K1 = 64 x (password || K || udata)
		h.block = append(append(append(h.block[:0], pw...), k...), udata...)
		n := 64 * len(h.block)
		if cap(h.k1) < n {
			h.k1 = make([]byte, n, 64*(r6MaxPassword+64+48))
		}
		k1 := h.k1[:n]
		copy(k1, h.block)
		for filled := len(h.block); filled < n; filled *= 2 {
			copy(k1[filled:], k1[:filled])
		}
		// b) E = AES-128-CBC(key K[0:16], IV K[16:32]) of K1, no padding
		// (64 x the block is always a whole number of AES blocks).
		block, err := aes.NewCipher(k[:16])
		if err != nil {
			panic(err) // unreachable: the key is always 16 bytes
		}
		cipher.NewCBCEncrypter(block, k[16:32]).CryptBlocks(k1, k1)
		e := k1
		// c) the first 16 bytes of E as a big-endian number, modulo 3:
		// 256 ≡ 1 (mod 3), so that is the sum of the bytes modulo 3.
		sum := 0
		for _, b := range e[:16] {
			sum += int(b)
		}
		// d) K = SHA-256, -384 or -512 of E
		switch sum % 3 {
		case 0:
			s := sha256.Sum256(e)
			k = append(h.k[:0], s[:]...)
		case 1:
			s := sha512.Sum384(e)
			k = append(h.k[:0], s[:]...)
		default:
			s := sha512.Sum512(e)
			k = append(h.k[:0], s[:]...)
		}
		// e, f) at least 64 rounds, then until E's last byte is at most
		// the round number (counted from 0) - 32.
		if round >= 63 && int(e[len(e)-1]) <= round-31 {
			break
		}
	}
	return k[:32]
}
