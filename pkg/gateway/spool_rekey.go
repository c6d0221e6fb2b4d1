package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
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

// Resealer is the keyring as Reseal needs it: open a message key under
// any key it holds, seal under the current one, and say which wrappings
// are under an older key.
type Resealer interface {
	Keyring
	NeedsReseal(sealed []byte) bool
}

// resealHook runs between writing a resealed copy and swapping it in
// (tests play a delivery that removes the message there).
var resealHook func(id string)

// Reseal rewraps each spooled message's key under the keyring's current
// master key, so `sealgate key rotate` leaves nothing in the spool that
// needs the old key. Only the wrapped key changes: the sealed chunks are
// copied as they are. It is safe while serve runs: each file is rewritten
// to a temporary copy, fsynced, and swapped in with one atomic
// renameat2(RENAME_EXCHANGE), which fails when the message was delivered
// (removed) meanwhile, so a delivered message is never brought back; a
// reader holding the old file keeps reading it (the old key stays until
// --finish). A crash leaves either the old or the new file, plus at most a
// tmp-* copy that Recover removes. It returns how many were resealed and
// how many still need the old key (a file system without RENAME_EXCHANGE
// leaves them for --finish to report).
func (s *Spool) Reseal(kr Resealer) (resealed, pending int, err error) {
	ids, err := s.IDs()
	if err != nil {
		return 0, 0, err
	}
	for _, id := range ids {
		done, err := s.reseal(kr, id)
		switch {
		case err != nil:
			return resealed, pending, fmt.Errorf("spool: resealing message %s: %w", id, err)
		case done:
			resealed++
		case s.stale(kr, id):
			pending++
		}
	}
	if resealed > 0 {
		if err := syncDir(s.dir); err != nil {
			return resealed, pending, err
		}
	}
	return resealed, pending, nil
}

// stale says the message id (still there) wraps its key under an old key.
func (s *Spool) stale(kr Resealer, id string) bool {
	f, err := os.Open(s.path(id))
	if err != nil {
		return false
	}
	defer f.Close()
	wrapped, err := readWrappedKey(bufio.NewReader(f))
	return err == nil && kr.NeedsReseal(wrapped)
}

func readWrappedKey(r io.Reader) ([]byte, error) {
	magic := make([]byte, len(spoolMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != spoolMagic {
		return nil, ErrSpoolCorrupt
	}
	w, err := readBlock(r, 4096)
	if err != nil {
		return nil, ErrSpoolCorrupt
	}
	return w, nil
}

// reseal rewraps one message; false without an error when there was
// nothing to do (gone, already current, or the swap is not supported).
func (s *Spool) reseal(kr Resealer, id string) (bool, error) {
	f, err := os.Open(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // delivered meanwhile
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	wrapped, err := readWrappedKey(r)
	if err != nil {
		return false, err
	}
	if !kr.NeedsReseal(wrapped) {
		return false, nil
	}
	rewrapped, err := rewrapKey(kr, id, wrapped)
	if err != nil {
		return false, err
	}
	tmp := filepath.Join(s.dir, "tmp-reseal-"+id)
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return false, nil // another rotate is at it
	}
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp) // after the swap it holds the old file
	bw := bufio.NewWriter(out)
	bw.WriteString(spoolMagic)
	writeBlock(bw, rewrapped)
	_, err = io.Copy(bw, r)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if resealHook != nil {
		resealHook(id)
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, s.path(id), unix.RENAME_EXCHANGE)
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil // delivered between our read and the swap
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		return false, nil // no atomic swap here: left for --finish to report
	case err != nil:
		return false, err
	}
	return true, nil
}

// StaleSealed says whether a sealed message (the bytes Seal made, or
// their first 4 KB) has its message key wrapped under an older master key.
func StaleSealed(sealed []byte, needsReseal func(sealed []byte) bool) (bool, error) {
	return staleKey(bytes.NewReader(sealed), needsReseal)
}

func staleKey(r io.Reader, needsReseal func(sealed []byte) bool) (bool, error) {
	wrapped, err := readWrappedKey(r)
	if err != nil {
		return false, err
	}
	return needsReseal(wrapped), nil
}

// rewrapKey opens message id's key under whichever master key wrapped it
// and wraps it under the current one.
func rewrapKey(kr Resealer, id string, wrapped []byte) ([]byte, error) {
	aad := []byte("sealgate spool " + id)
	key, err := kr.Open(wrapped, aad)
	if err != nil {
		return nil, fmt.Errorf("opening the message key: %w", err)
	}
	defer clear(key)
	rewrapped, err := kr.Seal(key, aad)
	if err != nil {
		return nil, fmt.Errorf("wrapping the message key: %w", err)
	}
	return rewrapped, nil
}

// ResealHeader is Reseal for a message kept as bytes (in the database,
// store.driver = "postgres"): given the first bytes of message id, it
// returns the length of the header that carries the wrapped key and the
// header to put in its place, or stale = false when the key is already
// under the current master key. The sealed chunks after the header stay
// as they are, so the caller swaps only the header (and only if the old
// header is still there).
func ResealHeader(kr Resealer, id string, head []byte) (oldLen int, header []byte, stale bool, err error) {
	r := bytes.NewReader(head)
	wrapped, err := readWrappedKey(r)
	if err != nil {
		return 0, nil, false, err
	}
	if !kr.NeedsReseal(wrapped) {
		return 0, nil, false, nil
	}
	rewrapped, err := rewrapKey(kr, id, wrapped)
	if err != nil {
		return 0, nil, false, err
	}
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	bw.WriteString(spoolMagic)
	writeBlock(bw, rewrapped)
	bw.Flush()
	return len(head) - r.Len(), b.Bytes(), true, nil
}
