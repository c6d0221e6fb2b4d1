package pdfmail

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"
)

// Notifier builds the message that tells an internal sender the password
// generated for a recipient (mode generated-to-sender). It only builds the
// bytes: the gateway signs it with S/MIME and delivers it internally, and
// only after the PDF it belongs to has left (see Resolution.Notification).
// GeneratedSource calls it only for senders found in the user directory.
type Notifier struct {
	// From is the notification's author, e.g. "sealgate@example.org";
	// "" uses the sender's own address (the mail then looks self-sent).
	From      string
	Language  string // de | en (default)
	Templates *Templates
	Hostname  string // for the Message-ID; "" = "sealgate.invalid"
	Now       func() time.Time
	// HideSubject (pdf.hide_subject) leaves the message's subject out.
	HideSubject bool
}

// NotificationHeader marks the notification so the gateway delivers it to
// the sender instead of processing it as outbound mail again.
const NotificationHeader = "X-Sealgate-Notification"

var notifySubjects = map[string]string{
	"en": "PDF password for your message to %s",
	"de": "PDF-Passwort für Ihre Nachricht an %s",
}

// Build returns the notification for q with password pw. Errors never
// contain the password.
func (n *Notifier) Build(q Query, pw []byte) ([]byte, error) {
	lang, err := lookupLanguage(n.Language)
	if err != nil {
		return nil, fmt.Errorf("notification: %w", err)
	}
	tmpl := n.Templates
	if tmpl == nil {
		tmpl = builtinTemplates
	}
	now := time.Now
	if n.Now != nil {
		now = n.Now
	}
	host := n.Hostname
	if host == "" {
		host = "sealgate.invalid"
	}
	from := n.From
	if from == "" {
		from = q.Sender
	}
	subject := q.CleanSubject
	if n.HideSubject {
		subject = ""
	}
	body, err := tmpl.passwordNotice(lang.code, PasswordNoticeData{Recipient: q.Recipient, Subject: subject, Password: string(pw)})
	if err != nil {
		return nil, fmt.Errorf("notification: %w", err)
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("notification: message id: %w", err)
	}

	var b strings.Builder
	writeField(&b, "From", sanitizeHeaderValue(from))
	writeField(&b, "To", sanitizeHeaderValue(q.Sender))
	writeField(&b, "Subject", mime.QEncoding.Encode("utf-8", fmt.Sprintf(notifySubjects[lang.code], sanitizeHeaderValue(q.Recipient))))
	writeField(&b, "Date", now().Format(time.RFC1123Z))
	writeField(&b, "Message-ID", "<"+hex.EncodeToString(id)+"@"+host+">")
	writeField(&b, "Auto-Submitted", "auto-generated")
	writeField(&b, NotificationHeader, "pdf-password")
	writeField(&b, "MIME-Version", "1.0")
	writeField(&b, "Content-Type", "text/plain; charset=utf-8")
	writeField(&b, "Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := io.WriteString(qp, toCRLF(body)); err != nil {
		return nil, fmt.Errorf("notification: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("notification: %w", err)
	}
	return []byte(b.String()), nil
}
