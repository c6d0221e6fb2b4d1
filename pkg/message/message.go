// Package message parses a mail message once, strictly, into the value
// that every stage of the gateway reads: the header fields as they came
// (raw, for rewriting and signing) and decoded (RFC 2047), the author and
// visible recipients, the subject, and the top-level MIME type.
//
// Every byte of a message comes from outside and may lie. Where a reader
// could be misled, this package refuses rather than guesses: a line in the
// header section that is not a field, a field that RFC 5322 allows once
// occurring twice, an author that is not exactly one mailbox. The gateway
// refuses such a message at DATA (5xx), so that no rule is ever decided on
// a header that one reader sees one way and another reader another way.
package message

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"strings"

	"github.com/emersion/go-message/charset"
	gmtextproto "github.com/emersion/go-message/textproto"
)

// Limits on the header section. Exchange writes a few dozen fields and a
// few KB; a header beyond these is an attack on the parsers behind us.
// One field may be long (To with a thousand recipients is ~40 KB), but
// not most of the header.
const (
	MaxHeaderBytes  = 1 << 20
	MaxFieldBytes   = 256 << 10
	MaxHeaderFields = 2000
)

// ErrMalformed is wrapped by every error that says the message cannot be
// read unambiguously (the gateway answers 554 5.6.0).
var ErrMalformed = errors.New("malformed message")

// ErrTooLarge is wrapped (with ErrMalformed) by the error for a header
// section beyond MaxHeaderBytes or MaxHeaderFields.
var ErrTooLarge = fmt.Errorf("%w: header section too large", ErrMalformed)

// ErrMisleadingName is wrapped by the error for a display name that shows
// another address than the mailbox it names (the gateway answers 550 5.7.1).
var ErrMisleadingName = errors.New("display name shows another address")

// Error is a problem at a place in the header section.
type Error struct {
	Line  int    // 1-based line in the header section; 0: not tied to a line
	Field string // canonical field name, if any
	// FirstLine is where a field that may occur once occurred first.
	FirstLine int
	Reason    string
	Err       error // ErrMalformed or ErrMisleadingName
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "header line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Reason)
	if e.FirstLine > 0 {
		fmt.Fprintf(&b, " (first at line %d)", e.FirstLine)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

func malformed(line int, field, format string, args ...any) error {
	return &Error{Line: line, Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrMalformed}
}

// Field is one header field.
type Field struct {
	Name    string // canonical (textproto.CanonicalMIMEHeaderKey)
	Raw     []byte // "Name: value\r\n" with continuation lines, as received
	Value   string // unfolded, trimmed, undecoded
	Decoded string // RFC 2047 encoded words decoded (Value when they do not decode)
	Line    int    // 1-based line of the field's first line
	Start   int    // offset of Raw in the message
	folded  bool   // Raw has continuation lines; Value is unfolded once at the end
}

// Mailbox is one parsed address.
type Mailbox struct {
	Name    string // display name, decoded
	Address string // as written (local part case kept)
}

// Lower is the address in lower case, the gateway's key for users,
// certificates and passwords.
func (m Mailbox) Lower() string { return LowerASCII(m.Address) }

// Header is a parsed header section.
type Header struct {
	Fields []Field
	// End is the offset just after the header section and the empty line
	// that ends it (the body's start); len(raw) when there is no body.
	End int
	// From is the one author; Sender the Sender field, if present.
	From   Mailbox
	Sender *Mailbox
	// Visible are the To and Cc addresses in lower case. VisibleOK is
	// false when To or Cc did not parse: then no envelope recipient can be
	// shown to be visible, and each is treated as a Bcc.
	Visible   map[string]bool
	VisibleOK bool
	Subject   string // decoded
	// MediaType is the top-level type in lower case ("text/plain" when
	// absent, "" when the field does not parse: see ContentTypeErr);
	// Params its parameters.
	MediaType      string
	Params         map[string]string
	ContentTypeErr error
	// TransferEncoding is Content-Transfer-Encoding in lower case.
	TransferEncoding string
}

// onceFields may occur at most once (RFC 5322 3.6, RFC 2045 for the MIME
// fields). Two of them would let two readers see two different messages.
var onceFields = map[string]bool{
	"Date": true, "From": true, "Sender": true, "Reply-To": true, "To": true, "Cc": true, "Bcc": true,
	"Message-Id": true, "In-Reply-To": true, "References": true, "Subject": true,
	"Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true,
}

// wordDecoder decodes encoded words in every charset go-message knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// Decode decodes the RFC 2047 encoded words of an unstructured value; a
// value that does not decode is returned as it is.
func Decode(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// ParseHeader parses the header section at the start of raw (CRLF line
// ends; the gateway refuses bare LF at DATA). The body, if any, is not
// read.
func ParseHeader(raw []byte) (*Header, error) {
	h := &Header{}
	if err := h.split(raw); err != nil {
		return nil, err
	}
	seen := map[string]int{}
	for _, f := range h.Fields {
		if onceFields[f.Name] {
			if first, dup := seen[f.Name]; dup {
				return nil, &Error{Line: f.Line, Field: f.Name, FirstLine: first, Err: ErrMalformed,
					Reason: "occurs a second time; it may occur only once"}
			}
			seen[f.Name] = f.Line
		}
	}
	if err := h.readAddresses(); err != nil {
		return nil, err
	}
	h.Subject = Decode(h.Get("Subject"))
	h.TransferEncoding = strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	h.MediaType, h.Params = "text/plain", map[string]string{}
	if ct := h.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			// Read the strictest way: a type nobody can be sure of is no
			// special type (it is never "already encrypted").
			h.MediaType, h.ContentTypeErr = "", fmt.Errorf("Content-Type %q: %w", ct, err)
		} else {
			h.MediaType, h.Params = mt, params
		}
	}
	return h, nil
}

// split cuts the header section into fields, refusing what is not one.
func (h *Header) split(raw []byte) error {
	off, line := 0, 0
	for {
		if off >= len(raw) {
			h.End = len(raw)
			h.unfoldLast()
			return nil
		}
		if off > MaxHeaderBytes {
			return &Error{Reason: fmt.Sprintf("the header section is larger than %d bytes", MaxHeaderBytes), Err: ErrTooLarge}
		}
		nl := bytes.IndexByte(raw[off:], '\n')
		end := len(raw)
		if nl >= 0 {
			end = off + nl + 1
		}
		text := bytes.TrimSuffix(bytes.TrimSuffix(raw[off:end], []byte("\n")), []byte("\r"))
		line++
		if len(text) == 0 {
			h.End = end
			h.unfoldLast()
			return nil
		}
		if bytes.IndexByte(text, 0) >= 0 || bytes.IndexByte(text, '\r') >= 0 {
			return malformed(line, "", "contains a NUL or a bare CR")
		}
		if text[0] == ' ' || text[0] == '\t' {
			if len(h.Fields) == 0 {
				return malformed(line, "", "the header section starts with a continuation line")
			}
			f := &h.Fields[len(h.Fields)-1]
			f.Raw = raw[f.Start:end]
			if len(f.Raw) > MaxFieldBytes {
				return &Error{Line: f.Line, Field: f.Name, Reason: fmt.Sprintf("the field is longer than %d bytes", MaxFieldBytes), Err: ErrTooLarge}
			}
			f.folded = true
			off = end
			continue
		}
		colon := bytes.IndexByte(text, ':')
		if colon < 0 {
			// The line itself is not quoted: errors reach logs, and a
			// line of the header may hold a secret ([pw:…]).
			return malformed(line, "", "is not a header field (no colon; a folded line must start with a space or tab)")
		}
		name := bytes.TrimRight(text[:colon], " \t")
		if len(name) == 0 {
			return malformed(line, "", "a header field without a name")
		}
		if !IsFieldName(name) {
			return malformed(line, "", "the field name has a character not allowed in names (printable ASCII without spaces)")
		}
		h.unfoldLast()
		if len(h.Fields) >= MaxHeaderFields {
			return &Error{Line: line, Reason: fmt.Sprintf("more than %d header fields", MaxHeaderFields), Err: ErrTooLarge}
		}
		h.Fields = append(h.Fields, Field{Name: textproto.CanonicalMIMEHeaderKey(string(name)),
			Raw: raw[off:end], Value: strings.TrimSpace(string(text[colon+1:])), Line: line, Start: off})
		off = end
	}
}

// unfoldLast sets the value of the last field from its raw lines, once
// (joining on every continuation line would copy a long To field once per
// line): each line trimmed, joined with one space.
func (h *Header) unfoldLast() {
	if len(h.Fields) == 0 || !h.Fields[len(h.Fields)-1].folded {
		return
	}
	f := &h.Fields[len(h.Fields)-1]
	f.folded = false
	rest := f.Raw[bytes.IndexByte(f.Raw, ':')+1:]
	var b strings.Builder
	b.Grow(len(rest))
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.Write(line)
	}
	f.Value = b.String()
}

// Get returns the value (undecoded) of the first field named name.
func (h *Header) Get(name string) string {
	if f := h.Field(name); f != nil {
		return f.Value
	}
	return ""
}

// Field returns the first field named name, or nil.
func (h *Header) Field(name string) *Field {
	name = textproto.CanonicalMIMEHeaderKey(name)
	for i := range h.Fields {
		if h.Fields[i].Name == name {
			return &h.Fields[i]
		}
	}
	return nil
}

// Textproto returns the fields as a go-message textproto.Header (for the
// packages that build MIME entities from it).
func (h *Header) Textproto() gmtextproto.Header {
	var t gmtextproto.Header
	for i := len(h.Fields) - 1; i >= 0; i-- {
		t.AddRaw(h.Fields[i].Raw)
	}
	return t
}

var addressParser = &mail.AddressParser{WordDecoder: wordDecoder}

func (h *Header) readAddresses() error {
	for i := range h.Fields {
		h.Fields[i].Decoded = Decode(h.Fields[i].Value)
	}
	from := h.Field("From")
	if from == nil {
		return malformed(0, "From", "missing; the gateway signs and decides as the author, so every message needs one")
	}
	list, err := addressParser.ParseList(from.Value)
	if err != nil {
		return malformed(from.Line, "From", "does not parse as an address: %v", err)
	}
	if len(list) != 1 {
		return malformed(from.Line, "From", "names %d addresses; the gateway signs as exactly one author", len(list))
	}
	h.From = Mailbox{Name: list[0].Name, Address: list[0].Address}
	if err := checkName(h.From, from); err != nil {
		return err
	}
	if s := h.Field("Sender"); s != nil {
		a, err := addressParser.Parse(s.Value)
		if err != nil {
			return malformed(s.Line, "Sender", "does not parse as one address: %v", err)
		}
		h.Sender = &Mailbox{Name: a.Name, Address: a.Address}
		if err := checkName(*h.Sender, s); err != nil {
			return err
		}
	}
	h.Visible, h.VisibleOK = map[string]bool{}, true
	for _, name := range []string{"To", "Cc"} {
		f := h.Field(name)
		if f == nil || strings.TrimSpace(f.Value) == "" {
			continue
		}
		list, err := addressParser.ParseList(f.Value)
		if err != nil {
			// Undisclosed-recipients groups and sloppy lists land here:
			// nobody is then shown to be visible (each gets a Bcc copy).
			h.VisibleOK = false
			continue
		}
		for _, a := range list {
			h.Visible[LowerASCII(a.Address)] = true
		}
	}
	return nil
}

// IsVisible says whether rcpt is named in To or Cc.
func (h *Header) IsVisible(rcpt string) bool {
	return h.VisibleOK && h.Visible[LowerASCII(rcpt)]
}

// Message is a whole message: its header and the body after it.
type Message struct {
	*Header
	Raw []byte
}

// Parse parses the header of raw; the body is raw[h.End:].
func Parse(raw []byte) (*Message, error) {
	h, err := ParseHeader(raw)
	if err != nil {
		return nil, err
	}
	return &Message{Header: h, Raw: raw}, nil
}

// Body is the body after the header section.
func (m *Message) Body() []byte { return m.Raw[m.End:] }

// BodyReader reads the body.
func (m *Message) BodyReader() io.Reader { return bytes.NewReader(m.Body()) }
