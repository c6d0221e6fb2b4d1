package portal

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/textproto"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/sealgate/sealgate/pkg/message"
	"github.com/sealgate/sealgate/pkg/store"
)

// KindReply is the kind of a reply link: bound to the recipient, the
// original message (Message-ID, subject) and its sender; usable until it
// expires (a recipient may answer more than once), each use proven with
// the recipient's PDF password.
const KindReply = "reply"

// Outbox queues a secure reply for delivery. It reads the complete
// message from r, streaming it into the spool (never the whole message in
// memory), and returns once it is durable. When reading r fails, nothing
// is queued and the error is returned. The implementation decides how it
// travels (to an internal sender as it is; to an outside one through the
// outbound pipeline).
type Outbox interface {
	QueueReply(ctx context.Context, from, to string, r io.Reader) error
}

// ReplyQuery is the message a reply link is made for.
type ReplyQuery struct {
	Recipient string // who received the PDF: the reply's author
	Sender    string // the original sender: the reply's recipient
	MessageID string // the original Message-ID, angle brackets included
	Subject   string // the cleaned original subject
}

// maxReplySubject bounds the subject kept with a reply link (runes).
const maxReplySubject = 500

// Reply form limits: the small fields are read into memory, the files
// are streamed.
const (
	maxFieldBytes = 4 << 10 // csrf, password
	maxTextBytes  = 1 << 20 // the reply's text, kept to show it again after a wrong password
	// freeReplies are the replies per link before they slow down (the
	// same growing delay as failed attempts), so a link with a known
	// password cannot flood the sender.
	freeReplies = 20
	// replyUploadTime is how long a reply's upload may take.
	replyUploadTime = 15 * time.Minute
)

var (
	errTooLarge = errors.New("portal: reply larger than smtp.max_message_bytes")
)

// ReplyLink makes a reply link for q and returns its address; "" without
// error when no reply can be offered (no outbox, or an address that is not
// one plain address).
func (s *Server) ReplyLink(ctx context.Context, q ReplyQuery) (string, error) {
	rcpt, sender := plainAddress(q.Recipient), plainAddress(q.Sender)
	if s.Outbox == nil || rcpt == "" || sender == "" {
		return "", nil
	}
	raw, hash, err := newToken()
	if err != nil {
		return "", err
	}
	now := s.Now()
	subject := []rune(strings.ToValidUTF8(headerSafe(q.Subject), "\uFFFD"))
	if s.HideSubject {
		subject = nil // not kept, not shown before the password
	}
	if len(subject) > maxReplySubject {
		subject = subject[:maxReplySubject]
	}
	t := store.PortalToken{Hash: hash, Kind: KindReply, Email: rcpt, Sender: sender, MessageID: messageID(q.MessageID),
		Subject: string(subject), CreatedAt: now, ExpiresAt: now.Add(s.ReplyTTL)}
	if _, err := s.Store.AddPortalToken(ctx, t, false); err != nil {
		return "", fmt.Errorf("portal: reply link: %w", err)
	}
	return trimSlash(s.BaseURL) + "/r/" + raw, nil
}

// messageID returns id if it is one msg-id (RFC 5322 §3.6.4, printable
// ASCII in angle brackets, no spaces), else "": the reply then has no
// In-Reply-To rather than a field someone else wrote.
func messageID(id string) string {
	id = strings.TrimSpace(id)
	if len(id) < 5 || len(id) > 250 || id[0] != '<' || id[len(id)-1] != '>' || !strings.Contains(id, "@") {
		return ""
	}
	for _, c := range []byte(id[1 : len(id)-1]) {
		if c <= 0x20 || c >= 0x7f || c == '<' || c == '>' {
			return ""
		}
	}
	return id
}

func (s *Server) replyData(t store.PortalToken, raw, csrf string) pageData {
	return pageData{Token: raw, CSRF: csrf, Email: t.Email, Sender: t.Sender, Subject: t.Subject,
		HideSubject: s.HideSubject, MaxSize: humanSize(s.MaxReplyBytes)}
}

func (s *Server) showReply(w http.ResponseWriter, r *http.Request) {
	t, _, ok := s.token(w, r, KindReply)
	if !ok {
		return
	}
	s.page(w, http.StatusOK, "reply", s.replyData(t, r.PathValue("token"), s.csrfToken(w, r)))
}

// postReply takes a reply: the small fields first (the form puts them
// before the files), the password checked before any file is read, then
// text and files streamed as a MIME message into the outbox.
func (s *Server) postReply(w http.ResponseWriter, r *http.Request) {
	t, hash, ok := s.token(w, r, KindReply)
	if !ok {
		return
	}
	ctx, addr := r.Context(), clientKey(r)
	raw := r.PathValue("token")
	if s.blocked(ctx, "replies:"+hash) {
		s.page(w, http.StatusTooManyRequests, "blocked", pageData{})
		return
	}
	// A valid link may upload for longer than the listener's timeouts
	// allow other requests (50 MB at a few Mbit/s takes minutes); the
	// body is still bounded in size below.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(replyUploadTime))
	_ = rc.SetWriteDeadline(time.Now().Add(replyUploadTime + time.Minute))
	// The form adds a few KiB around the message; the message itself is
	// bounded again while it is written.
	limit := s.MaxReplyBytes + 64<<10
	if r.ContentLength > limit {
		s.tooLarge(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	mr, err := r.MultipartReader()
	if err != nil {
		s.page(w, http.StatusBadRequest, "error", pageData{})
		return
	}
	fields, first, err := readFields(mr)
	switch {
	case isTooLarge(err):
		s.tooLarge(w, r)
		return
	case err != nil:
		s.page(w, http.StatusBadRequest, "error", pageData{})
		return
	}
	if !csrfEqual(r, fields["csrf"]) {
		s.fail(ctx, addr)
		s.page(w, http.StatusForbidden, "error", pageData{})
		return
	}
	if !s.passwordMatches(ctx, t.Email, fields["password"]) {
		s.fail(ctx, addr, "token:"+hash)
		d := s.replyData(t, raw, s.csrfToken(w, r))
		d.Problem, d.Text = "err_reply_password", fields["text"]
		s.page(w, http.StatusUnprocessableEntity, "reply", d)
		return
	}
	if err := s.Store.ClearPortalFailures(ctx, "token:"+hash); err != nil {
		s.Log.Warn("portal: clearing failures", "err", err)
	}
	n, err := s.queueReply(ctx, t, fields["text"], first, mr)
	switch {
	case isTooLarge(err):
		s.tooLarge(w, r)
		return
	case err != nil:
		s.Log.Error("portal: queueing a reply", "recipient", t.Email, "sender", t.Sender, "err", err)
		s.page(w, http.StatusServiceUnavailable, "error", pageData{})
		return
	}
	if _, _, err := s.Store.AddPortalFailure(ctx, "replies:"+hash, replyDelay); err != nil {
		s.Log.Warn("portal: counting a reply", "err", err)
	}
	s.Log.Info("portal: reply queued", "recipient", t.Email, "sender", t.Sender, "attachments", n)
	s.page(w, http.StatusOK, "replied", pageData{Sender: t.Sender})
}

func replyDelay(n int) time.Duration {
	if n < freeReplies {
		return 0
	}
	return min(time.Minute<<min(n-freeReplies, 6), time.Hour)
}

func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request) {
	// The rest of the upload is not read: the connection closes after the
	// answer rather than swallowing it.
	w.Header().Set("Connection", "close")
	s.page(w, http.StatusRequestEntityTooLarge, "toolarge", pageData{MaxSize: humanSize(s.MaxReplyBytes), Token: r.PathValue("token")})
}

func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.Is(err, errTooLarge) || errors.As(err, &mbe)
}

// readFields reads the form's small fields up to the first file part,
// which it returns unread (nil at the end of the form).
func readFields(mr *multipart.Reader) (map[string]string, *multipart.Part, error) {
	fields := map[string]string{}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return fields, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if p.FileName() != "" || p.FormName() == "files" {
			return fields, p, nil
		}
		name := p.FormName()
		limit := int64(maxFieldBytes)
		if name == "text" {
			limit = maxTextBytes
		}
		b, err := io.ReadAll(io.LimitReader(p, limit+1))
		if err != nil {
			return nil, nil, err
		}
		if int64(len(b)) > limit {
			return nil, nil, errTooLarge
		}
		if _, seen := fields[name]; !seen && (name == "csrf" || name == "password" || name == "text") {
			fields[name] = string(b)
		}
	}
}

func csrfEqual(r *http.Request, v string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || !validCSRF(c.Value) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(v)) == 1
}

// passwordMatches compares pw with the recipient's stored PDF password,
// both normalised as the PDF's password is (NFKC), as SHA-256 digests in
// constant time (the lengths do not leak either). No stored password is
// a mismatch.
func (s *Server) passwordMatches(ctx context.Context, email, pw string) bool {
	stored, _, _, err := s.Store.PDFPasswordState(ctx, email)
	defer clear(stored)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.Log.Error("portal: reading a PDF password", "err", err)
		}
		return false
	}
	if pw == "" || len(stored) == 0 {
		return false
	}
	a := sha256.Sum256([]byte(norm.NFKC.String(pw)))
	b := sha256.Sum256(norm.NFKC.Bytes(stored))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// queueReply streams the reply into the outbox and returns the number of
// attachments. An upload over the limit, or one cut off, aborts the
// message: the outbox sees a read error and queues nothing.
func (s *Server) queueReply(ctx context.Context, t store.PortalToken, text string, first *multipart.Part, mr *multipart.Reader) (int, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := s.Outbox.QueueReply(ctx, t.Email, t.Sender, pr)
		pr.CloseWithError(fmt.Errorf("portal: outbox: %w", errOr(err, io.ErrClosedPipe)))
		done <- err
	}()
	lw := &limitWriter{w: pw, left: s.MaxReplyBytes}
	n, err := s.writeReply(lw, t, text, first, mr)
	if err != nil {
		pw.CloseWithError(err)
		qerr := <-done
		if qerr == nil {
			// The outbox must not queue a message it could not read to
			// the end; if it did, that is its bug, but say so loudly.
			s.Log.Error("portal: the outbox queued a reply that failed", "err", err)
		}
		return n, err
	}
	pw.Close()
	return n, <-done
}

func errOr(err, other error) error {
	if err != nil {
		return err
	}
	return other
}

type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errTooLarge
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

// writeReply writes the reply: From the recipient To the original sender,
// Re: subject, In-Reply-To and References the original Message-ID, a
// fresh Message-ID; the text quoted-printable, each file base64 with a
// cleaned name and a sniffed type. Nothing from the form reaches the
// header.
func (s *Server) writeReply(w io.Writer, t store.PortalToken, text string, first *multipart.Part, mr *multipart.Reader) (int, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return 0, fmt.Errorf("portal: message id: %w", err)
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	mw := multipart.NewWriter(bw)
	var h strings.Builder
	field := func(k, v string) { h.WriteString(k + ": " + headerSafe(v) + "\r\n") }
	field("From", t.Email)
	field("To", t.Sender)
	subject := replySubject(t.Subject)
	if s.HideSubject {
		subject = s.lang().T("reply_hidden_subject")
	}
	h.WriteString("Subject: " + encodeWords(subject) + "\r\n")
	field("Date", s.Now().Format(time.RFC1123Z))
	field("Message-ID", "<"+hex.EncodeToString(id)+"@"+s.Hostname+">")
	if id := messageID(t.MessageID); id != "" {
		field("In-Reply-To", id)
		field("References", id)
	}
	field(InviteHeader, "reply")
	field("MIME-Version", "1.0")
	field("Content-Type", `multipart/mixed; boundary="`+mw.Boundary()+`"`)
	h.WriteString("\r\n")
	if _, err := io.WriteString(bw, h.String()); err != nil {
		return 0, err
	}
	tw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Transfer-Encoding": {"quoted-printable"}})
	if err != nil {
		return 0, err
	}
	qp := quotedprintable.NewWriter(tw)
	if _, err := io.WriteString(qp, bodyText(text)); err != nil {
		return 0, err
	}
	if err := qp.Close(); err != nil {
		return 0, err
	}
	n := 0
	for p := first; ; {
		if p != nil && (p.FileName() != "" || p.FormName() == "files") {
			wrote, err := writeAttachment(mw, p)
			if err != nil {
				return n, err
			}
			if wrote {
				n++
			}
		} else if p != nil {
			// A field after the files (a button's name): read and dropped.
			if _, err := io.Copy(io.Discard, io.LimitReader(p, maxFieldBytes)); err != nil {
				return n, err
			}
		}
		var err error
		p, err = mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	if err := mw.Close(); err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// writeAttachment streams one file part as a base64 attachment; an empty
// file input (no file chosen) writes nothing.
func writeAttachment(mw *multipart.Writer, p *multipart.Part) (bool, error) {
	br := bufio.NewReaderSize(p, 4096)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return false, err
	}
	if len(head) == 0 && p.FileName() == "" {
		return false, nil
	}
	ct := http.DetectContentType(head)
	if strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "text/xml") {
		// Never an active type: the file arrives as bytes to save.
		ct = "application/octet-stream"
	}
	name := safeFileName(p.FileName())
	aw, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {mime.FormatMediaType(mediaOnly(ct), map[string]string{"name": name})},
		"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": name})},
		"Content-Transfer-Encoding": {"base64"},
	})
	if err != nil {
		return false, err
	}
	enc := base64.NewEncoder(base64.StdEncoding, &message.LineBreaker{W: aw})
	if _, err := io.Copy(enc, br); err != nil {
		return false, err
	}
	if err := enc.Close(); err != nil {
		return false, err
	}
	_, err = io.WriteString(aw, "\r\n")
	return true, err
}

func mediaOnly(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "application/octet-stream"
	}
	return mt
}

// replySubject is "Re: " and the original subject (once, not "Re: Re:").
func replySubject(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 3 && strings.EqualFold(s[:3], "re:") {
		return s
	}
	return "Re: " + s
}

// encodeWords writes s as a header value: plain when it is printable
// ASCII without anything a reader could take for an encoded word,
// otherwise as UTF-8 encoded words, folded, so that text from a mail can
// neither end the field nor smuggle an encoded word of its own.
func encodeWords(s string) string {
	s = headerSafe(s)
	plain := len(s) <= 900 && !strings.Contains(s, "=?")
	for _, c := range []byte(s) {
		if c >= 0x7f {
			plain = false
		}
	}
	if plain {
		return s
	}
	var words []string
	var chunk []byte
	for _, r := range s {
		var b [4]byte
		n := utf8.EncodeRune(b[:], r)
		if len(chunk)+n > 45 { // 45 bytes → 60 base64 characters per word
			words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString(chunk)+"?=")
			chunk = chunk[:0]
		}
		chunk = append(chunk, b[:n]...)
	}
	if len(chunk) > 0 {
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString(chunk)+"?=")
	}
	return strings.Join(words, "\r\n ")
}

// bodyText turns the form's text into CRLF lines.
func bodyText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// safeFileName makes an uploaded file's name harmless in a mail and on
// the sender's disk: encoded words decoded once and then left without
// their markers, no directories (either slash), no control, bidi or
// Windows-reserved characters, no leading or trailing dots or spaces, no
// device names, at most 150 bytes; "attachment" when nothing is left.
func safeFileName(name string) string {
	if dec, err := new(mime.WordDecoder).DecodeHeader(name); err == nil {
		name = dec
	}
	name = norm.NFC.String(strings.ToValidUTF8(name, ""))
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			return -1
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0xfeff:
			return -1
		case unicode.IsSpace(r):
			return ' '
		}
		return r
	}, name)
	name = strings.Trim(name, ". ")
	for len(name) > 150 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	name = strings.Trim(name, ". ")
	base := strings.ToUpper(name)
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	switch base {
	case "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
		"LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9":
		name = "_" + name
	}
	if name == "" {
		return "attachment"
	}
	return name
}

// humanSize prints a byte count for people (MB, decimal).
func humanSize(n int64) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%d MB", n/1_000_000)
	case n >= 1000:
		return fmt.Sprintf("%d KB", n/1000)
	}
	return fmt.Sprintf("%d bytes", n)
}
