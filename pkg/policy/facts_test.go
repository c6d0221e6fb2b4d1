package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/config"
)

func readFactsFile(t testing.TB, name string) Facts {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ReadFacts(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if f.Size != int64(len(raw)) {
		t.Errorf("Size = %d", f.Size)
	}
	return f
}

func TestReadFacts(t *testing.T) {
	cases := []struct {
		file, sender, subject string
		calendar              bool
	}{
		{"outlook-meeting.eml", "juergen@example.org", "[secure] Besprechung über den Vertrag", true},
		{"meeting-with-attachment.eml", "alice@example.org", "Offer with attachments", true},
		{"ics-attached.eml", "alice@example.org", "Our appointment", false},
		{"plain.eml", "alice@example.org", "Plain", false},
		{"calendar-only.eml", "alice@example.org", "Cancel", true},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			f := readFactsFile(t, c.file)
			if f.Sender != c.sender || f.Subject != c.subject || f.Calendar != c.calendar {
				t.Errorf("got sender %q subject %q calendar %v; want %q %q %v", f.Sender, f.Subject, f.Calendar, c.sender, c.subject, c.calendar)
			}
		})
	}
}

// TestReadFactsDecide runs Outlook's meeting request with a
// classification header and a sensitivity label through a policy.
func TestReadFactsDecide(t *testing.T) {
	f := readFactsFile(t, "outlook-meeting.eml")
	pol := mustCompile(t, config.Policy{Rules: []config.PolicyRule{
		{Name: "label", HeaderMatch: []string{"msip_labels: _Name=Highly Confidential"}, Encrypt: "smime-or-pdf"},
		{Name: "rest", Encrypt: "smime"},
	}})
	d := pol.Decide(f, Recipient{Address: "bob@partner.test", HasCert: true})
	if d.Rule != "label" || !d.CalendarExempt || d.Method != MethodNone {
		t.Errorf("meeting request with label: %+v", d)
	}
	strict := mustCompile(t, config.Policy{Rules: []config.PolicyRule{
		{Name: "conf", Header: []string{"x-classification: confidential"}, Encrypt: "smime-required"},
	}})
	if d := strict.Decide(f, Recipient{Address: "bob@partner.test"}); d.Rule != "conf" || d.Action != ActionHold {
		t.Errorf("confidential meeting request without certificate: %+v", d)
	}
}

func TestReadFactsErrors(t *testing.T) {
	for _, in := range []string{"no colon line\r\n\r\nbody", "From: a@b\r\n bad continuation\r\nX\r\n\r\n"} {
		if _, err := ReadFacts(strings.NewReader(in), 0); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// FuzzReadFacts feeds arbitrary messages to ReadFacts: it must not panic
// and must not read past its body limit.
func FuzzReadFacts(f *testing.F) {
	for _, name := range []string{"outlook-meeting.eml", "meeting-with-attachment.eml", "ics-attached.eml", "plain.eml", "calendar-only.eml"} {
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a--"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		facts, err := ReadFacts(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			return
		}
		for _, h := range facts.Headers {
			if h.Name == "" {
				t.Fatalf("empty header name in %q", raw)
			}
		}
	})
}
