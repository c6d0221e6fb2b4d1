package portal

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html/template"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"
)

type mailKind int

const (
	mailInvite mailKind = iota
	mailReset
)

// InviteHeader marks the portal's own mails (like pdfmail's
// X-Sealgate-Notification), for filters and tests.
const InviteHeader = "X-Sealgate-Portal"

var mailHTML = template.Must(template.New("mail").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: Arial, sans-serif; line-height: 1.5; color: #1b1f24;">
{{range .Paras}}<p>{{.}}</p>
{{end}}<p><a href="{{.Link}}" style="display: inline-block; padding: 10px 18px; background: #0b5cad; color: #ffffff; text-decoration: none; border-radius: 4px; font-weight: bold;">{{.Button}}</a></p>
<p style="font-size: 13px; color: #4a5360;">{{.Link}}</p>
</body></html>
`))

// buildMail writes the invitation or reset mail to to: text and HTML, the
// link and nothing of any message's content. sender (invitations) is the
// internal user who is waiting; "" names nobody.
func (s *Server) buildMail(kind mailKind, to, sender, raw string, now time.Time) ([]byte, error) {
	l := s.lang()
	link, until := s.link(raw), l.Date(now.Add(s.TTL))
	var subject, body, from string
	switch kind {
	case mailInvite:
		who := sender
		if who == "" {
			who = l.T("someone")
			subject = l.T("invite_subject_n")
		} else {
			subject = l.F("invite_subject", who)
		}
		body, from = l.F("invite_body", who, until, link), s.From
		if sender != "" {
			from = sender
		}
	case mailReset:
		subject, body, from = l.T("reset_subject"), l.F("reset_body", to, until, link), s.From
	}
	var paras []string
	for _, p := range strings.Split(strings.TrimSpace(body), "\n\n") {
		if !strings.Contains(p, link) {
			paras = append(paras, p)
		}
	}
	var html bytes.Buffer
	if err := mailHTML.Execute(&html, map[string]any{"Lang": l.Code, "Paras": paras, "Link": link, "Button": l.T("mail_button")}); err != nil {
		return nil, fmt.Errorf("portal: mail template: %w", err)
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("portal: message id: %w", err)
	}
	boundary := "sealgate-portal-" + hex.EncodeToString(id[:6])
	var b bytes.Buffer
	field := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, headerSafe(v)) }
	field("From", from)
	field("To", to)
	field("Subject", mime.QEncoding.Encode("utf-8", subject))
	field("Date", now.Format(time.RFC1123Z))
	field("Message-ID", "<"+hex.EncodeToString(id)+"@"+s.Hostname+">")
	field("Auto-Submitted", "auto-generated")
	field(InviteHeader, map[mailKind]string{mailInvite: "invite", mailReset: "reset"}[kind])
	field("MIME-Version", "1.0")
	field("Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	for _, part := range []struct{ ct, body string }{{"text/plain", body}, {"text/html", html.String()}} {
		fmt.Fprintf(&b, "--%s\r\nContent-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", boundary, part.ct)
		qp := quotedprintable.NewWriter(&b)
		if _, err := qp.Write([]byte(crlf(part.body))); err != nil {
			return nil, fmt.Errorf("portal: mail body: %w", err)
		}
		if err := qp.Close(); err != nil {
			return nil, fmt.Errorf("portal: mail body: %w", err)
		}
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes(), nil
}

// headerSafe drops what could end or fold a header line.
func headerSafe(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}
