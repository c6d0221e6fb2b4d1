package pdfmail

import (
	"fmt"
	"strings"
	"time"
)

// language holds the words printed into the PDF itself. The carrier mail
// and notification texts are templates (see templates.go) so admins can
// reword them; these labels are fixed per language.
type language struct {
	code                                               string
	from, to, cc, date, subject, attachments           string
	attachmentHint, noSubject, noBody, page, dateStyle string
	reply, replyHint, hiddenSubject                    string
	decimalComma                                       bool
}

var languages = map[string]language{
	"en": {
		code: "en", from: "From:", to: "To:", cc: "Cc:", date: "Date:", subject: "Subject:",
		attachments:    "Attachments:",
		attachmentHint: "The attachments are embedded in this PDF: open your PDF reader's attachments panel (paper clip) to save them.",
		noSubject:      "(no subject)", noBody: "(This message has no text.)",
		page: "Page %d of %s", dateStyle: "Monday, 2 January 2006, 15:04 -0700",
		reply:         "Reply securely:",
		hiddenSubject: "Encrypted message",
		replyHint:     "Answer with text and files through the sender's secure mail system; you will be asked for this PDF's password.",
	},
	"de": {
		code: "de", from: "Von:", to: "An:", cc: "Kopie:", date: "Datum:", subject: "Betreff:",
		attachments:    "Anhänge:",
		attachmentHint: "Die Anhänge sind in dieses PDF eingebettet: öffnen Sie im PDF-Reader die Anhänge (Büroklammer), um sie zu speichern.",
		noSubject:      "(kein Betreff)", noBody: "(Diese Nachricht enthält keinen Text.)",
		page: "Seite %d von %s", dateStyle: "02.01.2006, 15:04 -0700", decimalComma: true,
		reply:         "Sicher antworten:",
		hiddenSubject: "Verschlüsselte Nachricht",
		replyHint:     "Antworten Sie mit Text und Dateien über das sichere Mail-System des Absenders; dabei wird das Passwort dieses PDFs abgefragt.",
	},
}

// lookupLanguage returns the language for code ("de", "en"; "" = en).
func lookupLanguage(code string) (language, error) {
	if code == "" {
		code = "en"
	}
	l, ok := languages[strings.ToLower(code)]
	if !ok {
		return language{}, fmt.Errorf("unknown language %q: use de or en", code)
	}
	return l, nil
}

var germanWeekdays = [...]string{"Sonntag", "Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag"}

func (l language) formatDate(t time.Time) string {
	if l.code == "de" {
		return germanWeekdays[t.Weekday()] + ", " + t.Format(l.dateStyle)
	}
	return t.Format(l.dateStyle)
}

// formatDay prints the day of t (UTC) for people.
func (l language) formatDay(t time.Time) string {
	if l.code == "de" {
		return t.UTC().Format("02.01.2006")
	}
	return t.UTC().Format("2 January 2006")
}

// formatSize prints a size for people: 980 bytes, 12.3 KB, 20.0 MB.
func (l language) formatSize(n int64) string {
	var s string
	switch {
	case n < 1000:
		if l.code == "de" {
			return fmt.Sprintf("%d Bytes", n)
		}
		return fmt.Sprintf("%d bytes", n)
	case n < 1000*1000:
		s = fmt.Sprintf("%.1f KB", float64(n)/1000)
	default:
		s = fmt.Sprintf("%.1f MB", float64(n)/1000/1000)
	}
	if l.decimalComma {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s
}
