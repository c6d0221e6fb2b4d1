// Command smtpload sends the bench load (scripts/bench-gateway.sh) over
// SMTP like smtp-source, but from many senders to many recipients, so the
// gateway's per-sender and per-recipient caches miss as they do in
// production. It asks for no extensions (net/smtp would ask SMTPUTF8 of a
// server that offers it, which smtp-sink, the next hop, does not).
// Message k goes from sender k mod -senders to recipient
// k mod -recipients over -sessions connections; any refused message makes
// it exit 1 (a load run that lost mail measured nothing).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-smtp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2525", "gateway `host:port`")
	sessions := flag.Int("sessions", 20, "concurrent SMTP sessions")
	messages := flag.Int("messages", 1000, "messages in all")
	size := flag.Int("size", 10240, "body bytes per message")
	from := flag.String("from", "user%04d@example.org", "sender address, `format` with %d for the sender number")
	to := flag.String("to", "rcpt%04d@partner.test", "recipient address, `format` with %d for the recipient number")
	senders := flag.Int("senders", 1000, "distinct senders")
	recipients := flag.Int("recipients", 1000, "distinct recipients")
	flag.Parse()
	if *sessions < 1 || *messages < 0 || *senders < 1 || *recipients < 1 {
		fmt.Fprintln(os.Stderr, "smtpload: -sessions, -senders and -recipients must be at least 1, -messages at least 0")
		os.Exit(2)
	}
	body := strings.Repeat(strings.Repeat("x", 78)+"\r\n", max(*size/80, 1))

	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range *sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(*addr)
			if err != nil {
				fmt.Fprintf(os.Stderr, "smtpload: connecting to %s: %v\n", *addr, err)
				failed.Add(1)
				return
			}
			defer c.Quit()
			if err := c.Hello("smtpload.sealgate.test"); err != nil {
				fmt.Fprintf(os.Stderr, "smtpload: EHLO to %s: %v\n", *addr, err)
				failed.Add(1)
				return
			}
			for {
				k := int(next.Add(1)) - 1
				if k >= *messages {
					return
				}
				f, t := fmt.Sprintf(*from, k%*senders), fmt.Sprintf(*to, k%*recipients)
				if err := send(c, f, t, fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: bench %d\r\n\r\n%s", f, t, k, body)); err != nil {
					fmt.Fprintf(os.Stderr, "smtpload: message %d (%s -> %s): %v\n", k, f, t, err)
					failed.Add(1)
					return // the session's state is unknown: stop it
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "smtpload: %d session(s) failed; the run is not a measurement\n", n)
		os.Exit(1)
	}
}

func send(c *smtp.Client, from, to, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}
