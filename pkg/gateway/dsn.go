package gateway

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"time"
)

// DSNInput is what a delivery status notification reports.
type DSNInput struct {
	Hostname string
	Envelope *Envelope
	Failed   map[string]string // recipient → diagnostic
	Header   []byte            // the original header section (never the body)
	Now      time.Time
	Boundary string
}

// BuildDSN writes an RFC 3464 multipart/report to the sender. It carries
// the original header only (text/rfc822-headers), never the body: the body
// is what the gateway exists to protect, and the sender has it anyway.
func BuildDSN(in DSNInput) []byte {
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	b := in.Boundary
	if b == "" {
		b = "dsn-" + NewID()
	}
	env := in.Envelope
	rcpts := make([]string, 0, len(in.Failed))
	for r := range in.Failed {
		rcpts = append(rcpts, r)
	}
	sort.Strings(rcpts)
	orcpt := map[string]string{}
	for _, r := range env.Recipients {
		orcpt[r.Addr] = r.ORcpt
	}
	var w bytes.Buffer
	crlf := func(format string, a ...any) { fmt.Fprintf(&w, format+"\r\n", a...) }
	crlf("From: Mail Delivery System <MAILER-DAEMON@%s>", in.Hostname)
	crlf("To: <%s>", env.From)
	crlf("Subject: Undelivered Mail Returned to Sender")
	crlf("Date: %s", now.Format(time.RFC1123Z))
	crlf("Message-ID: <%s.dsn@%s>", NewID(), in.Hostname)
	crlf("Auto-Submitted: auto-replied")
	crlf("MIME-Version: 1.0")
	crlf("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"", b)
	crlf("")
	crlf("--%s", b)
	crlf("Content-Type: text/plain; charset=utf-8")
	crlf("")
	crlf("This is the mail gateway at %s.", in.Hostname)
	crlf("")
	crlf("Your message could not be delivered to the following recipients:")
	crlf("")
	for _, r := range rcpts {
		crlf("<%s>: %s", r, oneLine(in.Failed[r]))
	}
	crlf("")
	crlf("--%s", b)
	crlf("Content-Type: message/delivery-status")
	crlf("")
	crlf("Reporting-MTA: dns; %s", in.Hostname)
	if env.EnvID != "" {
		crlf("Original-Envelope-Id: %s", oneLine(env.EnvID))
	}
	if !env.Received.IsZero() {
		crlf("Arrival-Date: %s", env.Received.Format(time.RFC1123Z))
	}
	for _, r := range rcpts {
		crlf("")
		if o := orcpt[r]; o != "" {
			crlf("Original-Recipient: rfc822; %s", oneLine(o))
		}
		crlf("Final-Recipient: rfc822; %s", r)
		crlf("Action: failed")
		crlf("Status: %s", statusOf(in.Failed[r]))
		crlf("Diagnostic-Code: smtp; %s", oneLine(in.Failed[r]))
	}
	crlf("")
	crlf("--%s", b)
	crlf("Content-Type: text/rfc822-headers")
	crlf("")
	w.Write(bytes.TrimRight(in.Header, "\r\n"))
	crlf("")
	crlf("")
	crlf("--%s--", b)
	return w.Bytes()
}

func oneLine(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	if len(s) > 900 {
		s = s[:900]
	}
	return s
}

// statusOf finds an enhanced status code (5.x.x) in a diagnostic, else 5.0.0.
func statusOf(diag string) string {
	for _, f := range strings.Fields(diag) {
		f = strings.Trim(f, "():;,")
		if len(f) >= 5 && f[0] == '5' && f[1] == '.' && strings.Count(f, ".") == 2 {
			return f
		}
	}
	return "5.0.0"
}
