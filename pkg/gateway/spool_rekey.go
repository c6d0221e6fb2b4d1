package gateway

import (
	"bufio"
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
		r := bufio.NewReader(f)
		magic := make([]byte, len(spoolMagic))
		_, err = io.ReadFull(r, magic)
		var wrapped []byte
		if err == nil && string(magic) == spoolMagic {
			wrapped, err = readBlock(r, 4096)
		}
		f.Close()
		if err != nil || string(magic) != spoolMagic {
			return n, fmt.Errorf("spool: message %s: %w", id, ErrSpoolCorrupt)
		}
		if needsReseal(wrapped) {
			n++
		}
	}
	return n, nil
}
