package smtppool

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/emersion/go-smtp"
)

// Transact runs MAIL, RCPT and DATA for one message on c, whose socket is
// raw. A context that ends closes raw, which ends any command waiting on
// it. errs holds each recipient's failure (nil: accepted); label starts
// every error (the host, or "smarthost ADDR").
//
// broken says c must not be used again. retry says the failure came
// before the message's final dot and from the connection, not from an
// answer of the server, so the message can go again at once on another
// connection without a duplicate. After the final dot the server may have
// the message: a failure there is never retry (the queue retries later, a
// duplicate at worst).
func Transact(ctx context.Context, c *smtp.Client, raw net.Conn, label, from string, rcpts []string, data []byte, utf8 bool) (errs []error, broken, retry bool) {
	errs = make([]error, len(rcpts))
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer func() {
		if !stop() {
			broken, retry = true, false
		}
	}()
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	if err := c.Mail(from, &smtp.MailOptions{Body: smtp.Body8BitMIME, Size: int64(len(data)), UTF8: utf8}); err != nil {
		lost := ConnLost(err)
		return fail(fmt.Errorf("%s: MAIL FROM: %w", label, err)), lost, lost
	}
	accepted := 0
	for i, rcpt := range rcpts {
		if err := c.Rcpt(rcpt, nil); err != nil {
			if ConnLost(err) {
				return fail(fmt.Errorf("%s: RCPT TO: %w", label, err)), true, true
			}
			errs[i] = fmt.Errorf("%s: RCPT TO <%s>: %w", label, rcpt, err)
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return errs, false, false // RSET before the next use clears the transaction
	}
	w, err := c.Data()
	if err != nil {
		lost := ConnLost(err)
		return fail(fmt.Errorf("%s: DATA: %w", label, err)), lost, lost
	}
	if _, err := w.Write(data); err != nil {
		// The final dot was not sent: the server cannot have the message.
		return fail(fmt.Errorf("%s: DATA: %w", label, err)), true, true
	}
	if err := w.Close(); err != nil {
		return fail(fmt.Errorf("%s: end of DATA: %w", label, err)), ConnLost(err), false
	}
	return errs, false, false
}

// ConnLost says err is the connection failing rather than an answer of
// the server; 421 is the server closing the connection.
func ConnLost(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code == 421
	}
	return true
}
