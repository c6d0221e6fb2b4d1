package gateway

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Keyring wraps the per-message spool keys with the master key
// (*secret.Keyring satisfies it). Only the wrapped key touches the disk.
type Keyring interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// Envelope is what the SMTP transaction said about a message: everything
// needed to deliver it and to bounce it (DSN parameters included).
type Envelope struct {
	ID         string      `json:"id"`
	From       string      `json:"from"` // "" for the null sender (bounces)
	Recipients []Recipient `json:"rcpts"`
	Ret        string      `json:"ret,omitempty"`   // DSN RET: FULL | HDRS
	EnvID      string      `json:"envid,omitempty"` // DSN ENVID
	Body8Bit   bool        `json:"8bit,omitempty"`
	UTF8       bool        `json:"utf8,omitempty"`
	Received   time.Time   `json:"received"`
	ClientIP   string      `json:"client_ip,omitempty"`
	Helo       string      `json:"helo,omitempty"`
	AuthUser   string      `json:"auth_user,omitempty"`
	// AuthRole is AuthUser's role when the message was accepted; the
	// pipeline checks the sender against it. "" when AuthUser is "".
	AuthRole AccountRole `json:"auth_role,omitempty"`
	// Raw marks messages the gateway made itself (DSNs): they are relayed
	// as they are, without the policy pipeline.
	Raw bool `json:"raw,omitempty"`
	// addedLines are the header lines the listener put in front of the
	// client's message (its Received field): errors about the header
	// count lines as the client wrote them. Not spooled.
	addedLines int
}

// Recipient is one RCPT TO with its DSN parameters.
type Recipient struct {
	Addr   string   `json:"addr"`
	Notify []string `json:"notify,omitempty"` // NEVER | SUCCESS | FAILURE | DELAY
	ORcpt  string   `json:"orcpt,omitempty"`
}

// Addrs lists the recipient addresses.
func (e *Envelope) Addrs() []string {
	out := make([]string, len(e.Recipients))
	for i, r := range e.Recipients {
		out[i] = r.Addr
	}
	return out
}

// Spool keeps accepted messages as files under one directory, each
// encrypted with its own random AES-256 key that is wrapped by the master
// keyring. Messages are streamed through in fixed-size AES-GCM chunks, so a
// 50 MB message never sits in memory, and a torn or altered file fails to
// open instead of yielding silently truncated mail.
type Spool struct {
	dir  string
	kr   Keyring
	sync dirSyncer
	// writing holds the ids whose Write is under way: their files are
	// incomplete and no business of Queue.Recover.
	writing sync.Map
}

const (
	spoolMagic     = "SGSPOOL1"
	spoolChunk     = 64 << 10
	spoolExt       = ".msg"
	maxEnvelopeLen = 16 << 20
)

// ErrSpoolCorrupt means a spool file is damaged or was not written by this
// keyring; the message cannot be delivered and needs an admin.
var ErrSpoolCorrupt = errors.New("spool file corrupt or undecryptable")

// OpenSpool creates dir (0700) if needed.
func OpenSpool(dir string, kr Keyring) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: creating %s: %w", dir, err)
	}
	return &Spool{dir: dir, kr: kr}, nil
}

// removeTemps removes the temporary files of earlier versions, which wrote
// to tmp-* and renamed: writes a crash interrupted, never answered 250.
// Only Queue.Recover calls it, before the listener runs (the queue
// commands open the spool while serve may be writing).
func (s *Spool) removeTemps() {
	if old, err := filepath.Glob(filepath.Join(s.dir, "tmp-*")); err == nil {
		for _, f := range old {
			os.Remove(f)
		}
	}
}

// beingWritten says a Write of id is under way in this process.
func (s *Spool) beingWritten(id string) bool {
	_, ok := s.writing.Load(id)
	return ok
}

// Dir is the spool directory.
func (s *Spool) Dir() string { return s.dir }

// NewID returns a fresh, time-ordered spool id.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x%s", time.Now().UTC().UnixMilli(), hex.EncodeToString(b[:]))
}

// ValidID says id is one NewID could have made (lowercase hex, at most
// 64 characters), so a file name built from it stays a plain name in its
// directory.
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Spool) path(id string) string { return filepath.Join(s.dir, id+spoolExt) }

// Write stores the envelope and the message read from r under env.ID and
// returns the number of message bytes. It returns only after the file and
// the directory entry are fsynced: the caller may then answer 250. On any
// error nothing is left behind. r's error (e.g. bare LF, size) is returned
// unchanged (wrapped) so that the SMTP layer can answer it.
//
// The file is written under its final name, without a temporary file and
// a rename (a create, a rename and a cleanup less per message): a crash
// mid-write leaves a file that fails to open (its last chunk is missing)
// and has no queue entry, since the entry is written only after Write
// returns; Queue.Recover removes such files. The directory fsync is shared
// with the sessions that finish at the same moment (dirSyncer).
func (s *Spool) Write(env *Envelope, r io.Reader) (int64, error) {
	if !ValidID(env.ID) {
		return 0, fmt.Errorf("spool: invalid id %q", env.ID)
	}
	s.writing.Store(env.ID, true)
	defer s.writing.Delete(env.ID)
	path := s.path(env.ID)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(path)
		}
	}()
	n, err := s.encode(f, env, r)
	if err != nil {
		return n, err
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("spool: fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("spool: %w", err)
	}
	ok = true
	if err := s.sync.sync(s.dir); err != nil {
		os.Remove(path)
		return n, err
	}
	return n, nil
}

func (s *Spool) encode(w io.Writer, env *Envelope, r io.Reader) (int64, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	wrapped, err := s.kr.Seal(key, []byte("sealgate spool "+env.ID))
	if err != nil {
		return 0, fmt.Errorf("spool: wrapping message key: %w", err)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return 0, err
	}
	ej, err := json.Marshal(env)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	bw := spoolWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() { bw.Reset(nil); spoolWriters.Put(bw) }()
	bufp, sealedp := chunkBufs.Get().(*[]byte), chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bufp)
	defer chunkBufs.Put(sealedp)
	buf, sealed := (*bufp)[:spoolChunk], *sealedp
	bw.WriteString(spoolMagic)
	writeBlock(bw, wrapped)
	// Chunk 0 is the envelope; the message follows in chunks 1..n, the
	// last one flagged so truncation is detected.
	writeBlock(bw, sealChunk(aead, 0, false, ej))
	var total int64
	var idx uint64 = 1
	for {
		k, rerr := io.ReadFull(r, buf)
		total += int64(k)
		last := rerr == io.EOF || rerr == io.ErrUnexpectedEOF
		if rerr != nil && !last {
			return total, rerr
		}
		writeBlock(bw, aead.Seal(sealed[:0], chunkNonce(idx, last), buf[:k], nil))
		idx++
		if last {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return total, fmt.Errorf("spool: writing: %w", err)
	}
	return total, nil
}

// Buffers of the spool's streams, reused: a new set per message cost
// ~200 KB of garbage each, a good part of the collector's work under load.
var (
	spoolWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, spoolChunk+64) }}
	spoolReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, spoolChunk+64) }}
	// chunkBufs hold a chunk, sealed or not (the seal adds 16 bytes).
	chunkBufs = sync.Pool{New: func() any { b := make([]byte, spoolChunk+64); return &b }}
)

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return cipher.NewGCM(b)
}

func chunkNonce(idx uint64, last bool) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[3:11], idx)
	if last {
		n[11] = 1
	}
	return n
}

func sealChunk(a cipher.AEAD, idx uint64, last bool, p []byte) []byte {
	return a.Seal(nil, chunkNonce(idx, last), p, nil)
}

func writeBlock(w *bufio.Writer, b []byte) {
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(b)))
	w.Write(l[:])
	w.Write(b)
}

// readBlockInto reads a block of at most len(buf) bytes into buf.
func readBlockInto(r io.Reader, buf []byte) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(l[:]))
	if n > len(buf) {
		return nil, ErrSpoolCorrupt
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func readBlock(r io.Reader, max int) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(l[:]))
	if n > max {
		return nil, ErrSpoolCorrupt
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// SpooledMessage is an open spool file: the envelope, and the message as a
// stream that authenticates each chunk as it is read.
type SpooledMessage struct {
	Envelope Envelope
	f        io.Closer // the file, or a no-op for a message from the store
	r        *bufio.Reader
	aead     cipher.AEAD
	idx      uint64
	buf      []byte // the rest of the current chunk's plaintext
	done     bool
	closed   bool
	// sealed and plain are the chunk buffers (pooled, returned by Close).
	sealed, plain *[]byte
}

// Open reads the envelope of message id; the body follows through Read.
// The caller closes it.
func (s *Spool) Open(id string) (*SpooledMessage, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("spool: invalid id %q", id)
	}
	f, err := os.Open(s.path(id))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	r := spoolReaders.Get().(*bufio.Reader)
	r.Reset(f)
	m := &SpooledMessage{f: f, r: r, sealed: chunkBufs.Get().(*[]byte), plain: chunkBufs.Get().(*[]byte)}
	if err := m.init(s.kr, id); err != nil {
		m.Close()
		return nil, fmt.Errorf("spool: message %s: %w", id, err)
	}
	return m, nil
}

func (m *SpooledMessage) init(kr Keyring, id string) error {
	magic := make([]byte, len(spoolMagic))
	if _, err := io.ReadFull(m.r, magic); err != nil || string(magic) != spoolMagic {
		return ErrSpoolCorrupt
	}
	wrapped, err := readBlock(m.r, 4096)
	if err != nil {
		return ErrSpoolCorrupt
	}
	key, err := kr.Open(wrapped, []byte("sealgate spool "+id))
	if err != nil {
		return fmt.Errorf("%w: unwrapping the message key: %v", ErrSpoolCorrupt, err)
	}
	if m.aead, err = newAEAD(key); err != nil {
		return err
	}
	sealed, err := readBlock(m.r, maxEnvelopeLen)
	if err != nil {
		return ErrSpoolCorrupt
	}
	ej, err := m.aead.Open(nil, chunkNonce(0, false), sealed, nil)
	if err != nil {
		return ErrSpoolCorrupt
	}
	if err := json.Unmarshal(ej, &m.Envelope); err != nil {
		return ErrSpoolCorrupt
	}
	if m.Envelope.ID != id {
		return ErrSpoolCorrupt
	}
	if m.Envelope.AuthUser != "" && !m.Envelope.AuthRole.Valid() {
		// Spooled before accounts had roles: the narrowest role, so
		// that an old file cannot send as anyone (a relay account's
		// message is held for the admin rather than signed blindly).
		m.Envelope.AuthRole = RolePersonal
	}
	m.idx = 1
	return nil
}

// Seal encodes env and the message read from r exactly as Write puts them
// into a spool file (same format, same keyring: a message key wrapped by
// the master key, AES-GCM chunks), but into memory, for a queue that keeps
// its messages in the database. It returns the sealed bytes and the number
// of message bytes; r's error is returned unchanged (wrapped).
func (s *Spool) Seal(env *Envelope, r io.Reader) ([]byte, int64, error) {
	if !ValidID(env.ID) {
		return nil, 0, fmt.Errorf("spool: invalid id %q", env.ID)
	}
	var buf bytes.Buffer
	n, err := s.encode(&buf, env, r)
	if err != nil {
		return nil, n, err
	}
	return buf.Bytes(), n, nil
}

// OpenSealed opens message id from the bytes Seal made (or a spool file's
// content): the same checks as Open, so bytes that were altered, cut short
// or sealed for another id fail with ErrSpoolCorrupt.
func (s *Spool) OpenSealed(id string, sealed []byte) (*SpooledMessage, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("spool: invalid id %q", id)
	}
	r := spoolReaders.Get().(*bufio.Reader)
	r.Reset(bytes.NewReader(sealed))
	m := &SpooledMessage{f: io.NopCloser(nil), r: r, sealed: chunkBufs.Get().(*[]byte), plain: chunkBufs.Get().(*[]byte)}
	if err := m.init(s.kr, id); err != nil {
		m.Close()
		return nil, fmt.Errorf("spool: message %s: %w", id, err)
	}
	return m, nil
}

// Read returns the decrypted message.
func (m *SpooledMessage) Read(p []byte) (int, error) {
	for len(m.buf) == 0 {
		if m.done {
			return 0, io.EOF
		}
		if m.closed {
			return 0, os.ErrClosed
		}
		sealed, err := readBlockInto(m.r, *m.sealed)
		if err != nil {
			return 0, ErrSpoolCorrupt // truncated before the last chunk
		}
		// Open into the other buffer: a failed Open clears its output,
		// and the sealed chunk is needed again for the last-chunk nonce.
		plain := (*m.plain)[:0]
		if pt, err := m.aead.Open(plain, chunkNonce(m.idx, false), sealed, nil); err == nil {
			m.buf = pt
		} else if pt, err := m.aead.Open(plain, chunkNonce(m.idx, true), sealed, nil); err == nil {
			m.buf = pt
			m.done = true
		} else {
			return 0, ErrSpoolCorrupt
		}
		m.idx++
	}
	n := copy(p, m.buf)
	m.buf = m.buf[n:]
	return n, nil
}

// Close releases the file and the buffers; Read fails after it.
func (m *SpooledMessage) Close() error {
	if m.closed {
		return nil
	}
	m.closed, m.buf = true, nil
	m.r.Reset(nil)
	spoolReaders.Put(m.r)
	chunkBufs.Put(m.sealed)
	chunkBufs.Put(m.plain)
	return m.f.Close()
}

// Remove deletes message id (after delivery); a missing file is no error.
// The directory is not fsynced: a removal lost in a crash only brings the
// message back for a duplicate delivery, which is allowed, and saves one
// fsync per message.
func (s *Spool) Remove(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("spool: invalid id %q", id)
	}
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// IDs lists the messages in the spool (for recovery after a crash).
func (s *Spool) IDs() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var ids []string
	for _, e := range ents {
		name := e.Name()
		if id, ok := strings.CutSuffix(name, spoolExt); ok && ValidID(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: fsync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: fsync dir %s: %w", dir, err)
	}
	return nil
}

// dirSyncer shares fsyncs of one directory among concurrent callers (group
// fsync): a caller joins the batch that has not started yet, and that
// batch's single fsync, which begins after every member's change, makes
// all of them durable. Each caller still returns only after an fsync that
// began after its own change has finished, with that fsync's error. The
// directory stays open between fsyncs.
type dirSyncer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending *syncBatch // joined by new callers; not started
	running bool       // a batch's fsync is in progress
	waiting int        // callers waiting for a batch (for tests)
	d       *os.File   // touched only by the caller running a batch
	// beforeFsync, if set, runs before each fsync (tests hold it there).
	beforeFsync func()
}

type syncBatch struct {
	finished bool
	err      error
}

// sync makes the entries of dir changed before the call durable.
func (ds *dirSyncer) sync(dir string) error {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.cond == nil {
		ds.cond = sync.NewCond(&ds.mu)
	}
	if ds.pending == nil {
		ds.pending = &syncBatch{}
	}
	b := ds.pending
	for !b.finished {
		if ds.running {
			ds.waiting++
			ds.cond.Wait()
			ds.waiting--
			continue
		}
		// Nothing running and b not finished: b has not started, so it
		// is still the pending batch; this caller runs it.
		ds.running = true
		ds.pending = nil
		ds.mu.Unlock()
		err := ds.fsync(dir)
		ds.mu.Lock()
		b.finished, b.err = true, err
		ds.running = false
		ds.cond.Broadcast()
	}
	return b.err
}

func (ds *dirSyncer) fsync(dir string) error {
	if ds.beforeFsync != nil {
		ds.beforeFsync()
	}
	if ds.d == nil {
		d, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("spool: fsync dir: %w", err)
		}
		ds.d = d
	}
	if err := ds.d.Sync(); err != nil {
		// Reopen next time: the error may belong to this descriptor.
		ds.d.Close()
		ds.d = nil
		return fmt.Errorf("spool: fsync dir %s: %w", dir, err)
	}
	return nil
}

// Discard removes message id durably (directory fsynced): for an admin's
// `queue delete`, which must not come back after a crash.
func (s *Spool) Discard(id string) error {
	if err := s.Remove(id); err != nil {
		return err
	}
	return s.sync.sync(s.dir)
}
