package pdfmail

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"runtime"
	"strings"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/sealgate/sealgate/pkg/message"
)

// DefaultAttachmentName is the carrier's PDF file name unless configured.
const DefaultAttachmentName = "message.pdf"

// ErrEmptyPassword is returned by Seal for an empty password: an
// encrypted PDF without a user password opens for anyone.
var ErrEmptyPassword = errors.New("pdfmail: empty password")

// Sealer turns a message into a carrier mail with the message inside as an
// AES-256 (R6) encrypted PDF. Its zero value works (English, message.pdf,
// built-in templates). A Sealer is safe for concurrent use once configured.
type Sealer struct {
	// Language of the PDF labels and the notice: "de" or "en" (default).
	Language string
	// AttachmentName is the PDF's file name in the carrier (default message.pdf).
	AttachmentName string
	// AttachOriginal also embeds the whole original message as original.eml.
	AttachOriginal bool
	// Templates for the carrier notice; nil uses the built-in ones.
	Templates *Templates
	// Font is deprecated (pdf.font_file): TrueType bytes added to the font
	// chain right after the built-in DejaVu Sans. FontBold is ignored.
	Font, FontBold []byte
	// chain is the font chain NewSealer built from pdf.fonts; nil uses the
	// built-in font and the system's fonts.
	chain *fontChain
	// CleanSubject, when set, rewrites the subject before it is printed or
	// leaves in the carrier (Passwords.CleanSubject strips the [pw:…] tag).
	CleanSubject func(string) string
	// HideSubject (pdf.hide_subject) gives the carrier a neutral subject
	// and leaves the original out of its notice; the PDF, encrypted,
	// keeps it (its metadata is encrypted with it).
	HideSubject bool
	// Now and Boundary make output reproducible in tests; nil/"" = clock and
	// random boundaries.
	Now      func() time.Time
	Boundary string
}

// SealInfo describes what Seal produced, for logs and delivery events (no
// secrets in it).
type SealInfo struct {
	Subject     string // the carrier's (cleaned, or neutral) subject
	Attachments int    // files embedded in the PDF
	PDFBytes    int64  // size of the PDF before base64
	// Warnings say what the PDF shows differently from the message (a
	// character no font has, drawn as a replacement mark). The PDF is made
	// all the same; the caller logs them or puts them in the event.
	Warnings []string
}

// Seal reads a whole RFC 5322 message from msg and writes to out the carrier
// mail: multipart/mixed with a text+HTML notice and the encrypted PDF.
// The PDF is streamed through base64 into out, so out holds a partial mail
// when Seal fails: the caller must then discard it (the gateway writes to a
// spool file it removes). Errors never contain the password.
func (s *Sealer) Seal(ctx context.Context, msg io.Reader, password []byte, out io.Writer) (SealInfo, error) {
	return s.SealWithNote(ctx, msg, password, CarrierNote{}, out)
}

// CarrierNote is what the carrier's notice tells the recipient about the
// password beyond the default text.
type CarrierNote struct {
	// PasswordMode is the mode that gave the password (Resolution.Mode:
	// ModePortal, ModePreset, ModeSubject, ModeGeneratedToSender; "" when
	// not known): the notice says which password opens the PDF.
	PasswordMode string
	// ChosenAt, when set, is when the recipient chose the password on the
	// portal: the notice says "the one you chose on the portal on …".
	ChosenAt time.Time
	// PortalURL is the portal's address (portal.url), for the reset link.
	PortalURL string
	// ReplyURL, when set, is the portal's reply link for this message and
	// recipient: on the PDF's first page (a link annotation) and in the
	// notice.
	ReplyURL string
}

// SealWithNote is Seal with a note about the password in the notice.
func (s *Sealer) SealWithNote(ctx context.Context, msg io.Reader, password []byte, note CarrierNote, out io.Writer) (SealInfo, error) {
	if len(password) == 0 {
		return SealInfo{}, ErrEmptyPassword
	}
	lang, err := lookupLanguage(s.Language)
	if err != nil {
		return SealInfo{}, fmt.Errorf("pdfmail: %w", err)
	}
	// The key derivation (Algorithm 2.B, four times) needs only the
	// passwords: it runs while the message is parsed and drawn. The
	// channel is buffered, so it ends on its own when Seal fails first.
	keys := make(chan r6Result, 1)
	userPW := norm.NFKC.String(string(password)) // SASLprep-like, as readers normalise
	go func() {
		var r r6Result
		ownerPW, err := randomOwnerPassword()
		if err == nil {
			r.keys, err = newR6Entries(userPW, ownerPW, permissionsP())
		}
		r.err = err
		keys <- r
	}()
	tmpl := s.Templates
	if tmpl == nil {
		tmpl = builtinTemplates
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	created := now()

	var orig *originalCapture
	if s.AttachOriginal {
		orig = newOriginalCapture()
	}
	pm, err := parseMessage(msg, orig)
	if err != nil {
		return SealInfo{}, fmt.Errorf("pdfmail: %w", err)
	}
	if s.CleanSubject != nil {
		pm.Subject = s.CleanSubject(pm.Subject)
	}
	pm.ReplyURL = note.ReplyURL
	if err := prepareHTML(pm); err != nil {
		return SealInfo{}, fmt.Errorf("pdfmail: %w", err)
	}
	if orig != nil {
		seen := map[string]int{}
		for _, a := range pm.Attachments {
			seen[strings.ToLower(a.Name)]++
		}
		a, err := orig.attachment("original.eml", seen)
		if err != nil {
			return SealInfo{}, fmt.Errorf("pdfmail: original.eml: %w", err)
		}
		pm.Attachments = append(pm.Attachments, a)
	}
	if err := ctx.Err(); err != nil {
		return SealInfo{}, err
	}
	if attachedBytes(pm.Attachments) >= gcAfterParseBytes {
		// The parse left the attachments' compression chunks as garbage
		// (about their size again); the write phase adds an encrypted copy
		// of the largest stream. Collecting now keeps the peak heap near
		// 3x the attachments instead of 4x+ (measured: BenchmarkSeal25MB).
		runtime.GC()
	}

	chain := s.chain
	if chain == nil {
		chain = builtinChain()
		if s.Font != nil {
			if chain, err = chain.withSecond(s.Font); err != nil {
				return SealInfo{}, fmt.Errorf("pdfmail: Sealer.Font: %w", err)
			}
		}
	}
	pages, warnings, err := renderPages(pm, lang, created, fontSet{regular: fontRegular, bold: fontBold, chain: chain})
	if err != nil {
		return SealInfo{}, fmt.Errorf("pdfmail: %w", err)
	}
	warnings = append(warnings, pm.htmlWarnings...)
	if err := ctx.Err(); err != nil {
		return SealInfo{}, err
	}

	carrierSubject, noticeSubject := pm.Subject, pm.Subject
	if s.HideSubject {
		carrierSubject, noticeSubject = lang.hiddenSubject, ""
	}
	nd := NoticeData{
		Sender: pm.From, Subject: noticeSubject, AttachmentName: s.attachmentName(),
		Attachments: len(pm.Attachments), ReplyURL: note.ReplyURL,
	}
	if pm.body != nil {
		nd.Attachments-- // message.html, the HTML body's copy, is no attachment of the sender's
	}
	nd.PasswordFrom = passwordFrom(note)
	if nd.PasswordFrom == "portal" {
		if !note.ChosenAt.IsZero() {
			nd.PasswordChosen = lang.formatDay(note.ChosenAt)
		}
		if note.PortalURL != "" {
			nd.PortalResetURL = strings.TrimRight(note.PortalURL, "/") + "/reset"
		}
	}
	notice, err := tmpl.notice(lang.code, nd)
	if err != nil {
		return SealInfo{}, fmt.Errorf("pdfmail: %w", err)
	}

	info := SealInfo{Subject: carrierSubject, Attachments: len(pm.Attachments), Warnings: warnings}
	bw := bufio.NewWriterSize(out, 64<<10)
	boundary, err := s.writeCarrierHead(bw, pm, carrierSubject, created, notice)
	if err != nil {
		return info, fmt.Errorf("pdfmail: write carrier: %w", err)
	}
	b64 := &message.LineBreaker{W: bw}
	enc := base64.NewEncoder(base64.StdEncoding, b64)
	cw := &countingWriter{w: enc}
	var k r6Result
	select {
	case k = <-keys:
	case <-ctx.Done():
		return info, ctx.Err()
	}
	if k.err != nil {
		return info, fmt.Errorf("pdfmail: encryption keys: %w", k.err)
	}
	if err := assemble(pages, pm.Attachments, printable(pm.Subject), k.keys, created, cw); err != nil {
		return info, fmt.Errorf("pdfmail: %w", err)
	}
	if err := enc.Close(); err != nil {
		return info, fmt.Errorf("pdfmail: write carrier: %w", err)
	}
	info.PDFBytes = cw.n
	if _, err := io.WriteString(bw, "\r\n--"+boundary+"--\r\n"); err != nil {
		return info, fmt.Errorf("pdfmail: write carrier: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return info, fmt.Errorf("pdfmail: write carrier: %w", err)
	}
	return info, nil
}

// passwordFrom names the password's origin for the notice templates
// (NoticeData.PasswordFrom).
func passwordFrom(note CarrierNote) string {
	switch {
	case note.PasswordMode == ModePortal, note.PasswordMode == "" && !note.ChosenAt.IsZero():
		return "portal"
	case note.PasswordMode == ModePreset, note.PasswordMode == ModeSubject:
		return "sender"
	case note.PasswordMode == ModeGeneratedToSender:
		return "generated"
	}
	return ""
}

// gcAfterParseBytes is where a collection between the phases pays off.
const gcAfterParseBytes = 8 << 20

func attachedBytes(atts []*attachment) int {
	n := 0
	for _, a := range atts {
		n += len(a.Deflated)
	}
	return n
}

func (s *Sealer) attachmentName() string {
	if s.AttachmentName != "" {
		return s.AttachmentName
	}
	return DefaultAttachmentName
}

// boundary returns the fixed test boundary for a level, or a random one.
func (s *Sealer) boundary(level string) string {
	if s.Boundary != "" {
		return s.Boundary + "-" + level
	}
	return ""
}

// carrierHeaders are copied raw (still RFC 2047 encoded) from the original
// so replies and threading keep working; Subject is rewritten (cleaned).
var carrierHeaders = []string{"From", "Sender", "Reply-To", "To", "Cc", "Date", "Message-ID", "In-Reply-To", "References"}

// writeCarrierHead writes the carrier up to the PDF part's body and returns
// the outer boundary, which the caller closes after streaming the PDF.
func (s *Sealer) writeCarrierHead(w io.Writer, pm *parsedMessage, subject string, created time.Time, n notice) (string, error) {
	var hb strings.Builder
	for _, k := range carrierHeaders {
		for _, v := range pm.header.Values(k) {
			writeField(&hb, k, sanitizeHeaderValue(v))
		}
	}
	if pm.header.Get("Date") == "" {
		writeField(&hb, "Date", created.Format(time.RFC1123Z))
	}
	writeField(&hb, "Subject", mime.QEncoding.Encode("utf-8", subject))
	writeField(&hb, "MIME-Version", "1.0")

	mixed := multipart.NewWriter(w)
	alt := &strings.Builder{}
	altW := multipart.NewWriter(alt)
	if b := s.boundary("mixed"); b != "" {
		if err := mixed.SetBoundary(b); err != nil {
			return "", err
		}
		if err := altW.SetBoundary(s.boundary("alt")); err != nil {
			return "", err
		}
	}
	writeField(&hb, "Content-Type", "multipart/mixed; boundary=\""+mixed.Boundary()+"\"")
	hb.WriteString("\r\n")
	hb.WriteString("This is a multi-part message in MIME format.\r\n")
	if _, err := io.WriteString(w, hb.String()); err != nil {
		return "", err
	}

	// Notice: multipart/alternative with text and HTML, quoted-printable.
	for _, p := range []struct{ ct, body string }{{"text/plain; charset=utf-8", n.Text}, {"text/html; charset=utf-8", n.HTML}} {
		pw, err := altW.CreatePart(textproto.MIMEHeader{"Content-Type": {p.ct}, "Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return "", err
		}
		qp := quotedprintable.NewWriter(pw)
		if _, err := io.WriteString(qp, toCRLF(p.body)); err != nil {
			return "", err
		}
		if err := qp.Close(); err != nil {
			return "", err
		}
	}
	if err := altW.Close(); err != nil {
		return "", err
	}
	aw, err := mixed.CreatePart(textproto.MIMEHeader{"Content-Type": {"multipart/alternative; boundary=\"" + altW.Boundary() + "\""}})
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(aw, alt.String()); err != nil {
		return "", err
	}

	name := s.attachmentName()
	_, err = mixed.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {mime.FormatMediaType("application/pdf", map[string]string{"name": name})},
		"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": name})},
		"Content-Transfer-Encoding": {"base64"},
	})
	// The closing boundary is written by Seal after the streamed PDF, so
	// mixed is deliberately not closed here.
	return mixed.Boundary(), err
}

// writeField writes "Key: value" folded at spaces near 76 columns.
func writeField(b *strings.Builder, key, value string) {
	line := key + ":"
	col := len(line)
	b.WriteString(line)
	for i, word := range strings.Split(value, " ") {
		if i > 0 && col+1+len(word) > 76 {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteByte(' ')
		b.WriteString(word)
		col += 1 + len(word)
	}
	b.WriteString("\r\n")
}

// sanitizeHeaderValue unfolds a raw header value and drops bare CR/LF that
// would otherwise let a hostile header inject new fields into the carrier.
func sanitizeHeaderValue(v string) string {
	v = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ", "\t", " ").Replace(v)
	return strings.Join(strings.Fields(v), " ")
}

func toCRLF(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// randomOwnerPassword is never stored: nobody needs to change the
// permissions later, and a known owner password would bypass them. 256
// random bits as 43 base64url characters: Algorithm 2.B hashes the
// password 64 times per round, so the shorter text costs less than hex.
func randomOwnerPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pdfmail: owner password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// r6Result is what the key derivation started by SealWithNote hands on.
type r6Result struct {
	keys *r6Entries
	err  error
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
