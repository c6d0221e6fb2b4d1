package gateway

import (
	"bytes"
	"io"

	"github.com/emersion/go-smtp"
)

// MaxHops is how many Received: fields a message may carry before it is
// taken for a mail loop (RFC 5321 6.3 suggests at least 100 is too many;
// real paths are under 20).
const MaxHops = 50

// LoopHeader is the trace field the gateway adds to what it relays; a
// message arriving with our own value in it went round in a loop.
const LoopHeader = "X-Sealgate-Processed"

// Errors the DATA path answers with. They name the problem and what to do.
var (
	errBareLF = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "bare LF in message data (RFC 5321 2.3.8); lines must end with CRLF"}
	errBareCR = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "bare CR in message data (RFC 5321 2.3.8); lines must end with CRLF"}
	errNUL = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "NUL octet in message data; encode binary content (base64)"}
	errLoop = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6},
		Message: "mail loop detected (too many Received: fields or already processed by this gateway)"}
)

// dataValidator passes message data through and fails on the first octet
// that could smuggle a second message past another MTA (bare CR or LF, NUL)
// and on signs of a mail loop in the header. It never buffers more than a
// header line's beginning.
type dataValidator struct {
	r        io.Reader
	prevCR   bool
	inHeader bool
	line     []byte // start of the current header line (lower case)
	hops     int
	loopMark []byte // "x-sealgate-processed: <hostname>" lower case
	err      error
}

func newDataValidator(r io.Reader, hostname string) *dataValidator {
	return &dataValidator{r: r, inHeader: true,
		loopMark: bytes.ToLower([]byte(LoopHeader + ": " + hostname))}
}

func (v *dataValidator) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	for i := 0; i < n; i++ {
		if e := v.step(p[i]); e != nil {
			v.err = e
			return i, e
		}
	}
	if err == io.EOF && v.prevCR {
		v.err = errBareCR
		return n, errBareCR
	}
	return n, err
}

func (v *dataValidator) step(c byte) error {
	if v.prevCR && c != '\n' {
		return errBareCR
	}
	switch c {
	case 0:
		return errNUL
	case '\r':
		v.prevCR = true
		return nil
	case '\n':
		if !v.prevCR {
			return errBareLF
		}
		v.prevCR = false
		return v.endLine()
	}
	if v.inHeader && len(v.line) < 256 {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		v.line = append(v.line, c)
	}
	return nil
}

func (v *dataValidator) endLine() error {
	if !v.inHeader {
		return nil
	}
	if len(v.line) == 0 {
		v.inHeader = false
		return nil
	}
	if bytes.HasPrefix(v.line, []byte("received:")) {
		v.hops++
		if v.hops > MaxHops {
			return errLoop
		}
	}
	if bytes.Equal(bytes.TrimSpace(v.line), v.loopMark) {
		return errLoop
	}
	v.line = v.line[:0]
	return nil
}
