package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/pkg/message"
)

// Admitter decides at the end of DATA, after the message is spooled and
// before the 250, whether it may be accepted. An error is the reply (an
// *smtp.SMTPError) and the spooled copy is removed: the sender learns at
// once, and nothing that would later be refused sits in the queue.
type Admitter interface {
	Admit(ctx context.Context, env *Envelope, header []byte) error
}

// HeaderAdmission refuses at DATA what must not be decided by any rule: a
// header section that does not parse unambiguously (554 5.6.0), a display
// name that shows another address (550 5.7.1), and, through Authorize, a
// sender the authenticated account may not send as.
type HeaderAdmission struct {
	// Authorize checks the authenticated account against the author
	// (From) and Sender; nil accepts every author.
	Authorize func(ctx context.Context, env *Envelope, h *message.Header) error
}

// Admit implements Admitter.
func (a HeaderAdmission) Admit(ctx context.Context, env *Envelope, header []byte) error {
	h, err := message.ParseHeader(header)
	var me *message.Error
	if errors.As(err, &me) && me.Line > env.addedLines {
		// Count lines as the client wrote them, not with our Received.
		shifted := *me
		shifted.Line -= env.addedLines
		if shifted.FirstLine > env.addedLines {
			shifted.FirstLine -= env.addedLines
		}
		err = &shifted
	}
	switch {
	case errors.Is(err, message.ErrTooLarge):
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Refused: " + err.Error()}
	case errors.Is(err, message.ErrMisleadingName):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Refused: " + err.Error()}
	case err != nil:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
			Message: "Refused, the message cannot be read unambiguously: " + err.Error()}
	}
	if a.Authorize != nil {
		return a.Authorize(ctx, env, h)
	}
	return nil
}

// headerCapture copies what is read through it until the end of the
// header section (the empty line), up to message.MaxHeaderBytes.
type headerCapture struct {
	r        io.Reader
	buf      bytes.Buffer
	complete bool // the empty line (or the end of the message) was seen
	full     bool // stopped capturing: the header is longer than the limit
}

func (c *headerCapture) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && !c.complete && !c.full {
		start := max(c.buf.Len()-3, 0)
		c.buf.Write(p[:n])
		if i := bytes.Index(c.buf.Bytes()[start:], []byte("\r\n\r\n")); i >= 0 {
			c.buf.Truncate(start + i + 4)
			c.complete = true
		} else if c.buf.Len() > message.MaxHeaderBytes {
			c.full = true
		}
	}
	if err == io.EOF && !c.full {
		c.complete = true
	}
	return n, err
}

// header returns the captured header section, or an SMTP error when it
// was larger than the limit.
func (c *headerCapture) header() ([]byte, error) {
	if !c.complete {
		return nil, &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
			Message: fmt.Sprintf("Refused: the header section is larger than %d bytes", message.MaxHeaderBytes)}
	}
	return c.buf.Bytes(), nil
}

// OwnerFunc maps an address of the organisation's users (primary or
// alias) to the user's primary address; ok is false for anyone else.
type OwnerFunc func(ctx context.Context, addr string) (primary string, ok bool, err error)

// OwnsAddress says whether personal account may send as addr: its own
// address (ASCII case ignored), or another address of the same user.
func OwnsAddress(owner OwnerFunc) func(ctx context.Context, account, addr string) (bool, error) {
	return func(ctx context.Context, account, addr string) (bool, error) {
		if message.SameAddress(account, addr) {
			return true, nil
		}
		if owner == nil {
			return false, nil
		}
		mine, ok, err := owner(ctx, account)
		if err != nil || !ok {
			return false, err
		}
		theirs, ok, err := owner(ctx, addr)
		if err != nil || !ok {
			return false, err
		}
		return mine == theirs, nil
	}
}

// AuthorizeHeaderSenders is HeaderAdmission.Authorize for the account
// roles: a relay account (the Exchange connector) sends for everyone; a
// personal account only with its own addresses in From and Sender, since
// the gateway signs as From (its MAIL FROM the listener has checked).
func AuthorizeHeaderSenders(owns func(ctx context.Context, account, addr string) (bool, error)) func(ctx context.Context, env *Envelope, h *message.Header) error {
	return func(ctx context.Context, env *Envelope, h *message.Header) error {
		if env.AuthUser == "" || env.AuthRole == RoleRelay {
			return nil
		}
		check := []struct{ field, addr string }{{"From", h.From.Address}}
		if h.Sender != nil {
			check = append(check, struct{ field, addr string }{"Sender", h.Sender.Address})
		}
		for _, c := range check {
			ok, err := owns(ctx, env.AuthUser, c.addr)
			if err != nil {
				return errSenderUncheckable
			}
			if !ok {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
					Message: fmt.Sprintf("Account %s may send only as its own address or its aliases; %s <%s> is not one", env.AuthUser, c.field, c.addr)}
			}
		}
		return nil
	}
}
