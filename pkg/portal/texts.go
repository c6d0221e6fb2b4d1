package portal

import (
	"fmt"
	"strings"
	"time"
)

// texts are the words of the pages and mails, per language (pdf.language).
// Values from mails (addresses, names) are never part of these strings:
// the templates insert them, escaped.
var texts = map[string]map[string]string{
	"en": {
		"title":                "Secure mail",
		"org_note":             "This page belongs to the mail gateway that sends you password-protected PDF mail.",
		"set_h1":               "Choose your password for encrypted mail",
		"reset_h1":             "Choose a new password for encrypted mail",
		"waiting":              "wants to send you an encrypted message. It is waiting until you have chosen a password.",
		"for_address":          "Messages to",
		"for_address_tail":     "arrive as PDF files that open only with your password.",
		"keep_it":              "Choose it here and keep it safe: we never send it to you, and nobody can tell it to you later.",
		"rule":                 "At least %d characters. Common passwords and your mail address are refused. A passphrase of several words is easy to remember and hard to guess.",
		"old_pdfs":             "PDFs you have already received keep the password they were sent with; only new messages use the new one.",
		"label_password":       "New password",
		"label_confirm":        "The same password again",
		"submit":               "Save password",
		"done_h1":              "Your password is saved",
		"done_invite":          "Messages waiting for you are being sent now. Open the attached PDF with the password you have just chosen.",
		"done_reset":           "New PDF mail to you uses the new password from now on. PDFs you received earlier still open with the old one.",
		"err_mismatch":         "The two entries differ. Please type the same password twice.",
		"err_short":            "This password is too short.",
		"err_long":             "This password is too long (at most 256 bytes) or not valid text.",
		"err_common":           "This password is too easy to guess. Please choose another one.",
		"invalid_h1":           "This link cannot be used",
		"invalid_text":         "It may have expired or been used already. If you have forgotten your password, ask for a new link below; if a message is waiting for you, its sender's next attempt sends you a new invitation.",
		"blocked_h1":           "Please wait a moment",
		"blocked_text":         "There were too many attempts from your connection. Please try again later.",
		"forgot_h1":            "Forgotten your PDF password?",
		"forgot_text":          "Enter your mail address. If we send you PDF mail, you will receive a link to choose a new password. PDFs you received earlier keep their old password.",
		"label_email":          "Your mail address",
		"forgot_submit":        "Send me a link",
		"forgot_link":          "Forgotten your password?",
		"sent_h1":              "Please check your mailbox",
		"sent_text":            "If this address receives PDF mail from us, a link to choose a new password is on its way. It is valid until %s.",
		"home_h1":              "Secure mail",
		"home_text":            "This site lets recipients of password-protected PDF mail choose their password. You reach it through the link in your invitation mail.",
		"error_h1":             "Something went wrong",
		"error_text":           "Please try again in a few minutes.",
		"invite_subject":       "Choose a password for encrypted mail from %s",
		"invite_subject_n":     "Choose a password for encrypted mail",
		"invite_body":          "Hello,\n\n%s wants to send you an encrypted message. It is delivered as a PDF file that opens only with a password that you choose yourself.\n\nChoose your password here (the link is valid until %s and works once):\n%s\n\nThe message is sent as soon as you have chosen it. Later encrypted messages use the same password.\n\nIf you did not expect this mail, you can ignore it.\n",
		"reset_subject":        "Choose a new password for encrypted mail",
		"reset_body":           "Hello,\n\nsomeone (hopefully you) asked for a new password for the encrypted PDF mail sent to %s.\n\nChoose a new password here (the link is valid until %s and works once):\n%s\n\nPDFs you have already received keep their old password.\n\nIf you did not ask for this, ignore this mail: your password stays as it is.\n",
		"mail_button":          "Choose password",
		"someone":              "Someone",
		"date_layout":          "2 January 2006, 15:04 MST",
		"reply_h1":             "Reply securely",
		"reply_to":             "Your reply goes to",
		"reply_subject":        "Subject:",
		"no_subject":           "(no subject)",
		"reply_secure":         "Your reply and its attachments travel to the sender over the sender's own secure mail system, not through your mail program.",
		"label_pdf_password":   "Your PDF password",
		"reply_password_help":  "The password your PDF mail opens with, as the recipient",
		"label_text":           "Your reply",
		"label_files":          "Attachments (optional)",
		"files_help":           "Text and files together up to %s.",
		"reply_submit":         "Send reply",
		"err_reply_password":   "This is not the password of your PDF mail. Please try again; after several wrong attempts you have to wait.",
		"replied_h1":           "Your reply is on its way",
		"replied_text":         "It has been accepted and is being delivered to",
		"replied_again":        "To add something, you can use the reply link in the PDF again.",
		"toolarge_h1":          "Your reply is too large",
		"toolarge_text":        "Text and attachments together may be at most %s. Nothing has been sent. Please send fewer or smaller files.",
		"toolarge_back":        "Back to the reply form",
		"reply_hidden_subject": "Reply via secure mail",
	},
	"de": {
		"title":                "Sichere E-Mail",
		"org_note":             "Diese Seite gehört zum Mail-Gateway, das Ihnen passwortgeschützte PDF-Mails sendet.",
		"set_h1":               "Wählen Sie Ihr Passwort für verschlüsselte E-Mails",
		"reset_h1":             "Wählen Sie ein neues Passwort für verschlüsselte E-Mails",
		"waiting":              "möchte Ihnen eine verschlüsselte Nachricht senden. Sie wartet, bis Sie ein Passwort gewählt haben.",
		"for_address":          "Nachrichten an",
		"for_address_tail":     "kommen als PDF-Dateien, die sich nur mit Ihrem Passwort öffnen lassen.",
		"keep_it":              "Wählen Sie es hier und bewahren Sie es gut auf: Wir senden es Ihnen nie zu, und niemand kann es Ihnen später nennen.",
		"rule":                 "Mindestens %d Zeichen. Gängige Passwörter und Ihre Mail-Adresse werden abgelehnt. Ein Satz aus mehreren Wörtern ist leicht zu merken und schwer zu erraten.",
		"old_pdfs":             "Bereits erhaltene PDFs behalten das Passwort, mit dem sie gesendet wurden; nur neue Nachrichten verwenden das neue.",
		"label_password":       "Neues Passwort",
		"label_confirm":        "Dasselbe Passwort noch einmal",
		"submit":               "Passwort speichern",
		"done_h1":              "Ihr Passwort ist gespeichert",
		"done_invite":          "Die für Sie wartenden Nachrichten werden jetzt gesendet. Öffnen Sie das angehängte PDF mit dem eben gewählten Passwort.",
		"done_reset":           "Neue PDF-Mails an Sie verwenden ab jetzt das neue Passwort. Früher erhaltene PDFs öffnen sich weiter mit dem alten.",
		"err_mismatch":         "Die beiden Eingaben unterscheiden sich. Bitte geben Sie zweimal dasselbe Passwort ein.",
		"err_short":            "Dieses Passwort ist zu kurz.",
		"err_long":             "Dieses Passwort ist zu lang (höchstens 256 Byte) oder kein gültiger Text.",
		"err_common":           "Dieses Passwort ist zu leicht zu erraten. Bitte wählen Sie ein anderes.",
		"invalid_h1":           "Dieser Link ist nicht verwendbar",
		"invalid_text":         "Er ist vielleicht abgelaufen oder wurde schon benutzt. Wenn Sie Ihr Passwort vergessen haben, fordern Sie unten einen neuen Link an; wartet eine Nachricht auf Sie, bringt der nächste Zustellversuch eine neue Einladung.",
		"blocked_h1":           "Bitte warten Sie einen Moment",
		"blocked_text":         "Von Ihrer Verbindung kamen zu viele Versuche. Bitte versuchen Sie es später noch einmal.",
		"forgot_h1":            "PDF-Passwort vergessen?",
		"forgot_text":          "Geben Sie Ihre Mail-Adresse ein. Wenn wir Ihnen PDF-Mails senden, erhalten Sie einen Link, um ein neues Passwort zu wählen. Früher erhaltene PDFs behalten ihr altes Passwort.",
		"label_email":          "Ihre Mail-Adresse",
		"forgot_submit":        "Link senden",
		"forgot_link":          "Passwort vergessen?",
		"sent_h1":              "Bitte sehen Sie in Ihr Postfach",
		"sent_text":            "Wenn diese Adresse PDF-Mails von uns erhält, ist ein Link zur Wahl eines neuen Passworts unterwegs. Er gilt bis %s.",
		"home_h1":              "Sichere E-Mail",
		"home_text":            "Hier wählen Empfänger passwortgeschützter PDF-Mails ihr Passwort. Sie erreichen die Seite über den Link in Ihrer Einladung.",
		"error_h1":             "Etwas ist schiefgegangen",
		"error_text":           "Bitte versuchen Sie es in einigen Minuten noch einmal.",
		"invite_subject":       "Wählen Sie ein Passwort für verschlüsselte E-Mails von %s",
		"invite_subject_n":     "Wählen Sie ein Passwort für verschlüsselte E-Mails",
		"invite_body":          "Guten Tag,\n\n%s möchte Ihnen eine verschlüsselte Nachricht senden. Sie kommt als PDF-Datei, die sich nur mit einem Passwort öffnet, das Sie selbst wählen.\n\nWählen Sie Ihr Passwort hier (der Link gilt bis %s und einmal):\n%s\n\nDie Nachricht wird gesendet, sobald Sie es gewählt haben. Spätere verschlüsselte Nachrichten verwenden dasselbe Passwort.\n\nWenn Sie diese Mail nicht erwartet haben, können Sie sie ignorieren.\n",
		"reset_subject":        "Wählen Sie ein neues Passwort für verschlüsselte E-Mails",
		"reset_body":           "Guten Tag,\n\njemand (hoffentlich Sie) hat ein neues Passwort für die verschlüsselten PDF-Mails an %s angefordert.\n\nWählen Sie hier ein neues Passwort (der Link gilt bis %s und einmal):\n%s\n\nBereits erhaltene PDFs behalten ihr altes Passwort.\n\nWenn Sie das nicht angefordert haben, ignorieren Sie diese Mail: Ihr Passwort bleibt, wie es ist.\n",
		"mail_button":          "Passwort wählen",
		"someone":              "Jemand",
		"date_layout":          "02.01.2006, 15:04 MST",
		"reply_h1":             "Sicher antworten",
		"reply_to":             "Ihre Antwort geht an",
		"reply_subject":        "Betreff:",
		"no_subject":           "(kein Betreff)",
		"reply_secure":         "Ihre Antwort und die Anhänge gelangen über das sichere Mail-System des Absenders zu ihm, nicht über Ihr Mail-Programm.",
		"label_pdf_password":   "Ihr PDF-Passwort",
		"reply_password_help":  "Das Passwort, mit dem sich Ihre PDF-Mails öffnen, als Empfänger",
		"label_text":           "Ihre Antwort",
		"label_files":          "Anhänge (optional)",
		"files_help":           "Text und Dateien zusammen bis %s.",
		"reply_submit":         "Antwort senden",
		"err_reply_password":   "Das ist nicht das Passwort Ihrer PDF-Mails. Bitte versuchen Sie es noch einmal; nach mehreren falschen Versuchen müssen Sie warten.",
		"replied_h1":           "Ihre Antwort ist unterwegs",
		"replied_text":         "Sie wurde angenommen und wird zugestellt an",
		"replied_again":        "Um etwas zu ergänzen, können Sie den Antwort-Link im PDF erneut verwenden.",
		"toolarge_h1":          "Ihre Antwort ist zu groß",
		"toolarge_text":        "Text und Anhänge dürfen zusammen höchstens %s groß sein. Es wurde nichts gesendet. Bitte senden Sie weniger oder kleinere Dateien.",
		"toolarge_back":        "Zurück zum Antwortformular",
		"reply_hidden_subject": "Antwort über sichere E-Mail",
	},
}

// lang is one language's texts.
type lang struct {
	Code string
	t    map[string]string
}

func langFor(code string) lang {
	code = strings.ToLower(code)
	if _, ok := texts[code]; !ok {
		code = "en"
	}
	return lang{Code: code, t: texts[code]}
}

// T returns the text for key (templates call it).
func (l lang) T(key string) string { return l.t[key] }

// F formats the text for key with args.
func (l lang) F(key string, args ...any) string { return fmt.Sprintf(l.t[key], args...) }

// Date formats t for people.
func (l lang) Date(t time.Time) string { return t.Format(l.t["date_layout"]) }
