package pdfmail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

// noticeText seals msg and returns the carrier's text and HTML notice,
// decoded, one after the other, so that phrases can be matched.
func noticeText(t *testing.T, lang string, msg []byte, note CarrierNote) string {
	t.Helper()
	s := &Sealer{Language: lang, Now: func() time.Time { return fixedTime }}
	var out bytes.Buffer
	if _, err := s.SealWithNote(context.Background(), bytes.NewReader(msg), []byte("a long password"), note, &out); err != nil {
		t.Fatal(err)
	}
	m, err := mail.CreateReader(&out)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for {
		p, err := m.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ct := p.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/") {
			body, err := io.ReadAll(p.Body)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(body)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestCarrierWordingPlurals: "the message is", "and its attachment are",
// "and its 3 attachments are" (and German with the right article and
// plural); never "attachment(s)", never "(1)".
func TestCarrierWordingPlurals(t *testing.T) {
	file := func(name string) testPart {
		return testPart{contentType: "application/octet-stream", filename: name, body: []byte("x")}
	}
	body := testPart{contentType: "text/plain; charset=utf-8", body: []byte("Hello")}
	tests := []struct {
		lang  string
		parts []testPart
		want  string
	}{
		{"en", []testPart{body}, "The message is in the attached PDF file"},
		{"en", []testPart{body, file("a.bin")}, "The message and its attachment are in the attached PDF file"},
		{"en", []testPart{body, file("a.bin"), file("b.bin"), file("c.bin")}, "The message and its 3 attachments are in the attached PDF file"},
		{"de", []testPart{body}, "Die Nachricht ist in der angehängten PDF-Datei"},
		{"de", []testPart{body, file("a.bin")}, "Die Nachricht und ihr Anhang sind in der angehängten PDF-Datei"},
		{"de", []testPart{body, file("a.bin"), file("b.bin"), file("c.bin")}, "Die Nachricht und ihre 3 Anhänge sind in der angehängten PDF-Datei"},
	}
	for _, tc := range tests {
		t.Run(tc.lang+"/"+tc.want, func(t *testing.T) {
			carrier := noticeText(t, tc.lang, buildMessage("Offer", tc.parts...), CarrierNote{})
			// The text and the HTML part each say it once.
			if n := strings.Count(carrier, tc.want); n != 2 {
				t.Errorf("%q %d times in the carrier, want 2 (text and HTML)", tc.want, n)
			}
			for _, bad := range []string{"attachment(s)", "Anhänge (", "The message are", "Ihr Browser", "erhalten von", "enter your password", "Ihr Passwort ein"} {
				if strings.Contains(carrier, bad) {
					t.Errorf("carrier says %q", bad)
				}
			}
		})
	}
}

// TestCarrierNamesThePassword: the notice says which password opens the
// PDF: the recipient's own from the portal (with the day when known), the
// one the sender gave (preset or subject), or the generated one the
// sender passes on separately; unknown asks the sender.
func TestCarrierNamesThePassword(t *testing.T) {
	chosen := time.Date(2026, 2, 14, 9, 0, 0, 0, time.UTC)
	msg := buildMessage("Offer", testPart{contentType: "text/plain; charset=utf-8", body: []byte("Hello")})
	tests := []struct {
		name, lang string
		note       CarrierNote
		want       []string
		not        []string
	}{
		{"en portal with day", "en", CarrierNote{PasswordMode: ModePortal, ChosenAt: chosen, PortalURL: "https://p.example"},
			[]string{"Use the password you chose on the sender's secure portal on", "14 February 2026", "https://p.example/reset"}, []string{"the sender gave you", "generated"}},
		{"en portal without day", "en", CarrierNote{PasswordMode: ModePortal, PortalURL: "https://p.example"},
			[]string{"Use the password you chose on the sender's secure portal.", "https://p.example/reset"}, []string{" on 1 January"}},
		{"en subject", "en", CarrierNote{PasswordMode: ModeSubject}, []string{"Use the password the sender gave you."}, []string{"you chose", "/reset", "generated"}},
		{"en preset", "en", CarrierNote{PasswordMode: ModePreset}, []string{"Use the password the sender gave you."}, []string{"you chose", "generated"}},
		{"en generated", "en", CarrierNote{PasswordMode: ModeGeneratedToSender}, []string{"The password was generated for you; the sender gives it to you separately"}, []string{"you chose", "the sender gave you"}},
		{"en unknown", "en", CarrierNote{}, []string{"Don't have the password? Please ask the sender"}, []string{"you chose", "the sender gave you", "generated"}},
		{"de portal with day", "de", CarrierNote{PasswordMode: ModePortal, ChosenAt: chosen, PortalURL: "https://p.example"},
			[]string{"Es ist das Passwort, das Sie am", "14.02.2026", "im sicheren Portal des Absenders gewählt haben.", "https://p.example/reset"}, []string{"Absender gegeben", "erzeugt"}},
		{"de subject", "de", CarrierNote{PasswordMode: ModeSubject}, []string{"Es ist das Passwort, das Ihnen der Absender gegeben hat."}, []string{"gewählt", "erzeugt"}},
		{"de generated", "de", CarrierNote{PasswordMode: ModeGeneratedToSender}, []string{"Das Passwort wurde für Sie erzeugt; der Absender teilt es Ihnen getrennt mit"}, []string{"gewählt", "gegeben hat"}},
		{"de unknown", "de", CarrierNote{}, []string{"Sie haben kein Passwort? Bitte fragen Sie den Absender"}, []string{"gewählt", "erzeugt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			carrier := noticeText(t, tc.lang, msg, tc.note)
			for _, w := range tc.want {
				if strings.Count(carrier, w) < 2 {
					t.Errorf("carrier lacks %q in text and HTML", w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(carrier, w) {
					t.Errorf("carrier has %q", w)
				}
			}
		})
	}
}
