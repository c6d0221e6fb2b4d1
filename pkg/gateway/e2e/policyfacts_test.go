package e2e

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// The policy in serve sees what `policy explain --message` sees: subjects
// and header values decoded from RFC 2047 encoded words (Outlook and
// Exchange encode any subject with a non-ASCII letter), and meeting
// requests. A tag inside an encoded word that went unseen would let a
// message out under a weaker rule.
func TestServePolicySeesDecodedHeadersAndMeetingRequests(t *testing.T) {
	for _, p := range []string{"swaks", "qpdf", "pdftotext"} {
		testpeer.Require(t, p)
	}
	const rules = `[[policy.rules]]
name = "secure-tag"
subject_tag = "[secure]"
strip_subject_tag = true
sign = "always"
encrypt = "smime-or-pdf"
on_failure = "hold"

[[policy.rules]]
name = "label"
header = ["X-Classification: Vertraulich"]
sign = "always"
encrypt = "pdf"
on_failure = "hold"

[[policy.rules]]
name = "default"
sign = "always"
encrypt = "none"
`
	g := newGatewayRules(t, rules, "")
	g.start()

	b64 := func(s string) string { return "=?utf-8?B?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }
	// The tag split over two Q-encoded words, as a long subject is folded.
	splitQ := "=?utf-8?Q?=5Bsec?= =?utf-8?Q?ure=5D_=C3=9Cberweisung_=5Bpw:Corr3ct-Horse=5D?="
	swaks(t, g.addr, "alice@example.org", "dave@other.test", []string{"Subject: " + b64("[secure] Überweisung [pw:Corr3ct-Horse]")}, "tagged body one")
	swaks(t, g.addr, "alice@example.org", "erin@other.test", []string{"Subject: " + splitQ}, "tagged body two")
	swaks(t, g.addr, "alice@example.org", "fred@other.test", []string{"Subject: [pw:Corr3ct-Horse] Gutachten", "X-Classification: " + b64("Vertraulich")}, "labelled body")
	ics := "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nSUMMARY:Review\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	swaks(t, g.addr, "alice@example.org", "gina@other.test",
		[]string{"Subject: " + b64("[secure] Besprechung"), "MIME-Version: 1.0", "Content-Type: text/calendar; method=REQUEST; charset=utf-8"}, ics)
	box := g.waitOutbox("dave@other.test", "erin@other.test", "fred@other.test", "gina@other.test")

	dec := &mime.WordDecoder{}
	for _, tt := range []struct {
		rcpt, body string
	}{
		{"dave@other.test", "tagged body one"},
		{"erin@other.test", "tagged body two"},
		{"fred@other.test", "labelled body"},
	} {
		t.Run(tt.rcpt+" gets a PDF that opens only with the password", func(t *testing.T) {
			raw := stripEnvelopeFields(box[tt.rcpt])
			m, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			subject, err := dec.DecodeHeader(m.Header.Get("Subject"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(subject, "Corr3ct") || strings.Contains(subject, "[secure]") || bytes.Contains(raw, []byte(tt.body)) {
				t.Fatalf("carrier leaks (subject %q):\n%s", subject, raw)
			}
			pdf := findPart(t, m.Body, m.Header, "application/pdf")
			if pdf == nil {
				t.Fatalf("not a PDF carrier (the rule was not applied):\n%s", raw)
			}
			f := filepath.Join(t.TempDir(), "m.pdf")
			if err := os.WriteFile(f, pdf, 0o600); err != nil {
				t.Fatal(err)
			}
			if r := testpeer.Run(t, nil, "qpdf", "--requires-password", f); r.ExitCode != 0 {
				t.Fatalf("qpdf --requires-password exit %d: the PDF opens without a password", r.ExitCode)
			}
			txt := testpeer.MustRun(t, nil, "pdftotext", "-upw", "Corr3ct-Horse", f, "-")
			if !bytes.Contains(txt, []byte(tt.body)) {
				t.Fatalf("PDF text: %s", txt)
			}
		})
	}
	t.Run("a meeting request stays readable, signed, tag stripped", func(t *testing.T) {
		raw := stripEnvelopeFields(box["gina@other.test"])
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		mt, _, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
		body, _ := io.ReadAll(m.Body)
		if mt != "multipart/signed" || !bytes.Contains(body, []byte("METHOD:REQUEST")) {
			t.Fatalf("meeting request not delivered signed and readable (%s):\n%s", mt, raw)
		}
		subject, _ := dec.DecodeHeader(m.Header.Get("Subject"))
		if subject != "Besprechung" {
			t.Fatalf("subject %q, want the tag stripped", subject)
		}
		if !strings.Contains(g.logText(), `"rule":"secure-tag"`) {
			t.Fatalf("no log line names the deciding rule:\n%s", g.logText())
		}
	})
}
