package pdfmail

import (
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode ISO-8859-x, Windows-125x bodies and headers
	"github.com/emersion/go-message/mail"
)

// MaxBodyText bounds the text rendered into the pages. Beyond it the PDF would
// have thousands of pages nobody reads; the sender gets a clear error instead
// (the original attachments are never limited here, only by the SMTP size).
const MaxBodyText = 4 << 20

// ErrMalformed marks a message that cannot be read as MIME. The gateway
// holds such a message (fail closed) rather than sending it out unprotected.
var ErrMalformed = errors.New("malformed message")

// parsedMessage is what the PDF shows: the header block, the body text, and
// the attachments, each already Flate-compressed so that a 20 MB attachment
// is held once, compressed, and never as decoded plus encoded copies.
type parsedMessage struct {
	From, To, Cc, Subject string
	Date                  time.Time
	HasDate               bool
	Text                  string // body as plain text (from text/plain, or from HTML)
	FromHTML              bool
	// HTML is the HTML body as sent ("" when none): laid out by html*.go
	// in preference to Text, and embedded in the PDF as message.html.
	HTML string
	// body is the HTML laid out for the pages (set by prepareHTML).
	body        *htmlDoc
	Attachments []*attachment
	// ReplyURL is the portal's reply link for this message and recipient
	// (CarrierNote.ReplyURL), drawn as a link on the first page.
	ReplyURL string
	header   mail.Header
	// htmlWarnings say what of the HTML's style sheets was not applied.
	htmlWarnings []string
}

// attachment is one original attachment, stored Flate-compressed.
type attachment struct {
	Name        string // unique within the PDF (name tree key)
	ContentType string // original MIME type, e.g. application/pdf
	Size        int64  // decoded size in bytes
	Deflated    []byte // Flate (zlib) stream of the content
	ModTime     time.Time
	// ContentID is the part's Content-ID without <> ("" when none): HTML
	// refers to inline images by it (cid:…).
	ContentID string
}

// parseMessage reads a whole RFC 5322 message. Attachments are decoded and
// compressed on the fly (see attachment). A broken message gives an error
// wrapping ErrMalformed that says what is wrong, never a panic.
func parseMessage(r io.Reader, original *originalCapture) (pm *parsedMessage, err error) {
	defer func() {
		// go-message is robust, but a gateway must never die on hostile input.
		if p := recover(); p != nil {
			pm, err = nil, fmt.Errorf("%w: parser failed: %v", ErrMalformed, p)
		}
	}()
	if original != nil {
		r = io.TeeReader(r, original)
	}
	mr, err := mail.CreateReader(r)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if mr == nil {
		return nil, fmt.Errorf("%w: no message", ErrMalformed)
	}
	pm = &parsedMessage{header: mr.Header}
	pm.From = addressField(mr.Header, "From")
	pm.To = addressField(mr.Header, "To")
	pm.Cc = addressField(mr.Header, "Cc")
	if s, err := mr.Header.Subject(); err == nil {
		pm.Subject = s
	} else {
		pm.Subject = mr.Header.Get("Subject")
	}
	for _, f := range []*string{&pm.From, &pm.To, &pm.Cc, &pm.Subject} {
		*f = strings.ToValidUTF8(*f, "\uFFFD")
	}
	if d, err := mr.Header.Date(); err == nil && !d.IsZero() {
		pm.Date, pm.HasDate = d, true
	}

	var plain, html strings.Builder
	names := map[string]int{}
	for n := 1; ; n++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return nil, fmt.Errorf("%w: part %d: %w", ErrMalformed, n, err)
		}
		if p == nil {
			break
		}
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			ct, _, _ := h.ContentType()
			ct = strings.ToLower(ct)
			if (ct == "text/plain" || ct == "" || ct == "text/html") && !hasFilename(h.Header) {
				dst := &plain
				if ct == "text/html" {
					dst = &html
				}
				if err := appendText(dst, p.Body); err != nil {
					return nil, fmt.Errorf("%w: part %d (%s): %w", ErrMalformed, n, ct, err)
				}
				continue
			}
			a, err := readAttachment(p.Body, inlineName(h, ct, n), ct, names)
			if err != nil {
				return nil, fmt.Errorf("%w: part %d: %w", ErrMalformed, n, err)
			}
			a.ContentID = contentID(h.Header)
			pm.Attachments = append(pm.Attachments, a)
		case *mail.AttachmentHeader:
			ct, _, _ := h.ContentType()
			name, _ := h.Filename()
			if name == "" {
				name = inlineName(&mail.InlineHeader{Header: h.Header}, ct, n)
			}
			a, err := readAttachment(p.Body, name, strings.ToLower(ct), names)
			if err != nil {
				return nil, fmt.Errorf("%w: attachment %d: %w", ErrMalformed, n, err)
			}
			a.ContentID = contentID(h.Header)
			pm.Attachments = append(pm.Attachments, a)
		}
	}
	if original != nil {
		// Drain what the MIME reader left (epilogue) so the .eml is complete.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, fmt.Errorf("%w: reading message: %w", ErrMalformed, err)
		}
	}
	if html.Len() > 0 {
		// The HTML is what the sender saw; the text (or the HTML as
		// text) stays as the fallback and for the size check.
		pm.HTML = html.String()
	}
	switch {
	case plain.Len() > 0 && strings.TrimSpace(plain.String()) != "":
		pm.Text = plain.String()
	case html.Len() > 0:
		// Laid out as HTML (prepareHTML); no text version needed.
		pm.FromHTML = true
	}
	if len(pm.Text) > MaxBodyText {
		return nil, fmt.Errorf("body text is %d bytes, more than the %d that are rendered into a PDF; send the text as an attachment", len(pm.Text), MaxBodyText)
	}
	return pm, nil
}

// contentID is a part's Content-ID without the angle brackets.
func contentID(h message.Header) string {
	return strings.TrimSpace(strings.Trim(strings.TrimSpace(h.Get("Content-ID")), "<>"))
}

func hasFilename(h message.Header) bool {
	_, params, _ := h.ContentDisposition()
	if params["filename"] != "" {
		return true
	}
	_, params, _ = h.ContentType()
	return params["name"] != ""
}

// addressField renders an address header for people ("Name <a@b>, ...").
// Unparseable headers are shown as decoded text rather than dropped.
func addressField(h mail.Header, key string) string {
	if list, err := h.AddressList(key); err == nil && len(list) > 0 {
		parts := make([]string, len(list))
		for i, a := range list {
			if a.Name != "" {
				parts[i] = a.Name + " <" + a.Address + ">"
			} else {
				parts[i] = a.Address
			}
		}
		return strings.Join(parts, ", ")
	}
	if s, err := h.Text(key); err == nil {
		return s
	}
	return h.Get(key)
}

// appendText reads a text part (already charset-decoded by go-message) and
// appends it, making sure the result is valid UTF-8.
func appendText(dst *strings.Builder, r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, MaxBodyText+1))
	if err != nil {
		return err
	}
	if len(b) > MaxBodyText {
		return fmt.Errorf("text part larger than %d bytes", MaxBodyText)
	}
	if dst.Len() > 0 {
		dst.WriteString("\n\n")
	}
	dst.WriteString(strings.ToValidUTF8(string(b), "\uFFFD"))
	return nil
}

// inlineName gives a file name to a part that has none (inline images,
// forwarded messages), so it can still be saved from the PDF.
func inlineName(h *mail.InlineHeader, ct string, n int) string {
	if _, params, err := h.ContentDisposition(); err == nil && params["filename"] != "" {
		return params["filename"]
	}
	if _, params, err := h.ContentType(); err == nil && params["name"] != "" {
		return params["name"]
	}
	ext := ".bin"
	switch ct {
	case "message/rfc822":
		ext = ".eml"
	case "text/plain":
		ext = ".txt"
	case "text/html":
		ext = ".html"
	default:
		if exts, _ := mime.ExtensionsByType(ct); len(exts) > 0 {
			ext = exts[0]
		}
	}
	// Inline images in HTML mail carry a Content-ID such as
	// <logo@example.org>; "logo.png" says more than "part-3.png".
	if cid := strings.Trim(h.Get("Content-ID"), "<> \t"); cid != "" {
		cid, _, _ = strings.Cut(cid, "@")
		if cid = cleanFileName(cid); cid != "attachment.bin" && len(cid) <= 64 {
			if path.Ext(cid) != "" {
				return cid // already "logo.png"
			}
			return cid + ext
		}
	}
	return fmt.Sprintf("part-%d%s", n, ext)
}

// cleanFileName keeps only the last path element and removes control
// characters, so a hostile name cannot point outside a reader's save folder.
func cleanFileName(name string) string {
	name = strings.ToValidUTF8(name, "_")
	name = strings.ReplaceAll(name, "\\", "/")
	name = path.Base(name)
	name = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || r == 0x7f:
			return -1
		case r == '\u200e' || r == '\u200f' || r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069':
			// Bidi controls make "rechnung\u202Efdp.exe" look like a PDF.
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if name == "" || name == "." || name == "/" || name == ".." {
		name = "attachment.bin"
	}
	if len(name) > 200 {
		// Keep the extension; cut on a rune boundary.
		ext := path.Ext(name)
		if len(ext) > 20 {
			ext = ""
		}
		cut := 200 - len(ext)
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut] + ext
	}
	return name
}

// uniqueName makes file names unique inside one PDF: the embedded files
// name tree is keyed by name and readers save by name.
func uniqueName(name string, seen map[string]int) string {
	key := strings.ToLower(name)
	seen[key]++
	if seen[key] == 1 {
		return name
	}
	ext := path.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := seen[key]; ; i++ {
		cand := fmt.Sprintf("%s (%d)%s", base, i, ext)
		if seen[strings.ToLower(cand)] == 0 {
			seen[strings.ToLower(cand)] = 1
			return cand
		}
	}
}

// readAttachment decodes and compresses one part in a single pass.
func readAttachment(r io.Reader, name, ct string, seen map[string]int) (*attachment, error) {
	if ct == "" {
		ct = "application/octet-stream"
	}
	a := &attachment{Name: uniqueName(cleanFileName(name), seen), ContentType: ct}
	var buf chunkBuffer
	zw := getZlib(&buf)
	defer zlibPool.Put(zw)
	n, err := io.Copy(zw, r)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", a.Name, err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	a.Size = n
	a.Deflated = buf.bytes()
	return a, nil
}

// chunkBuffer collects bytes in fixed chunks, so growing never copies what
// was written (bytes.Buffer doubles and copies: up to 3x a 20 MB attachment
// at once). bytes returns one exact-size slice with room for the AES
// padding pdfcpu appends when it encrypts the stream, so that append does
// not copy either.
type chunkBuffer struct {
	chunks [][]byte
	n      int
}

const chunkSize = 1 << 20

func (c *chunkBuffer) Write(p []byte) (int, error) {
	written := len(p)
	for len(p) > 0 {
		if len(c.chunks) == 0 || len(c.chunks[len(c.chunks)-1]) == chunkSize {
			c.chunks = append(c.chunks, make([]byte, 0, chunkSize))
		}
		last := &c.chunks[len(c.chunks)-1]
		k := min(chunkSize-len(*last), len(p))
		*last = append(*last, p[:k]...)
		p = p[k:]
		c.n += k
	}
	return written, nil
}

func (c *chunkBuffer) bytes() []byte {
	out := make([]byte, 0, c.n+aesPadRoom)
	for i, ch := range c.chunks {
		out = append(out, ch...)
		c.chunks[i] = nil // let the chunk go as soon as it is copied
	}
	c.chunks = nil
	return out
}

// aesPadRoom is one AES block: PDF AES streams are PKCS#7 padded.
const aesPadRoom = 16

// zlibPool reuses compressors: each holds about 1 MB of state, and a mail
// with a thousand small attachments would otherwise allocate a gigabyte.
var zlibPool sync.Pool

// getZlib returns a zlib writer at BestSpeed onto w. BestSpeed because
// attachments are mostly compressed already (PDF, JPEG, ZIP, Office);
// higher levels cost seconds on 25 MB and save almost nothing.
func getZlib(w io.Writer) *zlib.Writer {
	if zw, ok := zlibPool.Get().(*zlib.Writer); ok {
		zw.Reset(w)
		return zw
	}
	zw, _ := zlib.NewWriterLevel(w, zlib.BestSpeed) // errors only for an invalid level
	return zw
}
