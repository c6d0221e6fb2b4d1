package cms

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
)

var errUnwrap = errors.New("AES key unwrap: integrity check failed")

var defaultIV = []byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

// aesWrap implements the AES key wrap of RFC 3394 §2.2.1.
func aesWrap(kek, key []byte) ([]byte, error) {
	if len(key)%8 != 0 || len(key) < 16 {
		return nil, errors.New("AES key wrap: key length must be a multiple of 8, at least 16")
	}
	c, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(key) / 8
	out := make([]byte, 8+len(key))
	copy(out, defaultIV)
	copy(out[8:], key)
	var block [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			copy(block[:8], out[:8])
			copy(block[8:], out[i*8:i*8+8])
			c.Encrypt(block[:], block[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(block[:8])^t)
			copy(out[i*8:], block[8:])
		}
	}
	return out, nil
}

// aesUnwrap implements RFC 3394 §2.2.2 and checks the default IV.
func aesUnwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped)%8 != 0 || len(wrapped) < 24 {
		return nil, errUnwrap
	}
	c, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(wrapped)/8 - 1
	a := make([]byte, 8)
	copy(a, wrapped[:8])
	r := make([]byte, n*8)
	copy(r, wrapped[8:])
	var block [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(block[:8], binary.BigEndian.Uint64(a)^t)
			copy(block[8:], r[(i-1)*8:i*8])
			c.Decrypt(block[:], block[:])
			copy(a, block[:8])
			copy(r[(i-1)*8:], block[8:])
		}
	}
	if subtle.ConstantTimeCompare(a, defaultIV) != 1 {
		return nil, errUnwrap
	}
	return r, nil
}

// x963KDF derives keyLen bytes from the shared secret z as ANSI X9.63
// (RFC 5753 §7.2 "KDF").
func x963KDF(newHash func() hash.Hash, z, sharedInfo []byte, keyLen int) []byte {
	var out []byte
	var counter [4]byte
	for i := uint32(1); len(out) < keyLen; i++ {
		h := newHash()
		binary.BigEndian.PutUint32(counter[:], i)
		h.Write(z)
		h.Write(counter[:])
		h.Write(sharedInfo)
		out = h.Sum(out)
	}
	return out[:keyLen]
}
