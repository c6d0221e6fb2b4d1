package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// StaleKeys counts the spooled messages whose message key is wrapped
// under an older master key (needsReseal: secret.Keyring.NeedsReseal), so
// `sealgate key rotate --finish` can refuse to delete that key while they
// wait. Messages that disappear meanwhile (delivered) are not counted.
func (s *Spool) StaleKeys(needsReseal func(sealed []byte) bool) (int, error) {
	ids, err := s.IDs()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		f, err := os.Open(s.path(id))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("spool: %w", err)
		}
		stale, err := staleKey(bufio.NewReader(f), needsReseal)
		f.Close()
		if err != nil {
			return n, fmt.Errorf("spool: message %s: %w", id, err)
		}
		if stale {
			n++
		}
	}
	return n, nil
}

// StaleSealed says whether a sealed message (the bytes Seal made, or
// their first 4 KB) has its message key wrapped under an older master key.
func StaleSealed(sealed []byte, needsReseal func(sealed []byte) bool) (bool, error) {
	return staleKey(bytes.NewReader(sealed), needsReseal)
}

func staleKey(r io.Reader, needsReseal func(sealed []byte) bool) (bool, error) {
	magic := make([]byte, len(spoolMagic))
	_, err := io.ReadFull(r, magic)
	var wrapped []byte
	if err == nil && string(magic) == spoolMagic {
		wrapped, err = readBlock(r, 4096)
	}
	if err != nil || string(magic) != spoolMagic {
		return false, ErrSpoolCorrupt
	}
	return needsReseal(wrapped), nil
}
