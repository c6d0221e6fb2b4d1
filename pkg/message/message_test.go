package message

import (
	"errors"
	"strings"
	"testing"
)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestParseHeaderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      error
		line      int
		field     string
	}{
		{"line without colon", "From: a@example.org\nX-Classification: Confidential\nthis is not a field\nSubject: x\n\nbody\n", ErrMalformed, 3, ""},
		{"starts with continuation", " folded\nFrom: a@example.org\n\n", ErrMalformed, 1, ""},
		{"empty name", "From: a@example.org\n: value\n\n", ErrMalformed, 2, ""},
		{"space in name", "From: a@example.org\nX Bad: v\n\n", ErrMalformed, 2, ""},
		{"two From", "From: a@example.org\nFrom: b@example.org\n\n", ErrMalformed, 2, "From"},
		{"From and From with space", "From: a@example.org\nFROM : b@example.org\n\n", ErrMalformed, 2, "From"},
		{"two Subject", "From: a@example.org\nSubject: one\nsubject: two\n\n", ErrMalformed, 3, "Subject"},
		{"two Content-Type", "From: a@example.org\nContent-Type: text/plain\nContent-Type: application/pkcs7-mime\n\n", ErrMalformed, 3, "Content-Type"},
		{"two Sender", "From: a@example.org\nSender: a@example.org\nSender: b@example.org\n\n", ErrMalformed, 3, "Sender"},
		{"two To", "From: a@example.org\nTo: x@example.net\nTo: y@example.net\n\n", ErrMalformed, 3, "To"},
		{"no From", "Subject: hi\n\n", ErrMalformed, 0, "From"},
		{"two authors", "From: a@example.org, b@example.org\n\n", ErrMalformed, 1, "From"},
		{"From unparseable", "From: <<>>\n\n", ErrMalformed, 1, "From"},
		{"NUL", "From: a@example.org\nX-A: a\x00b\n\n", ErrMalformed, 2, ""},
		{"bare CR", "From: a@example.org\nX-A: a\rb\n\n", ErrMalformed, 2, ""},
		{"name shows another address", "From: \"ceo@example.org\" <alice@example.org>\n\n", ErrMisleadingName, 1, "From"},
		{"encoded name shows another address", "From: =?utf-8?b?Y2VvQGV4YW1wbGUub3Jn?= <alice@example.org>\n\n", ErrMisleadingName, 1, "From"},
		{"name with angle address", "From: \"CEO <ceo@example.org>\" <alice@example.org>\n\n", ErrMisleadingName, 1, "From"},
		{"full-width at sign", "From: \"ceo\uff20example.org\" <alice@example.org>\n\n", ErrMisleadingName, 1, "From"},
		{"Sender name", "From: alice@example.org\nSender: \"bob@example.org\" <alice@example.org>\n\n", ErrMisleadingName, 2, "Sender"},
		{"Sender two addresses", "From: alice@example.org\nSender: a@example.org, b@example.org\n\n", ErrMalformed, 2, "Sender"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHeader(crlf(tc.msg))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Line != tc.line || e.Field != tc.field {
				t.Fatalf("err = %#v, want line %d field %q", err, tc.line, tc.field)
			}
		})
	}
}

func TestParseHeaderHugeHeader(t *testing.T) {
	msg := "From: a@example.org\nX-Big: " + strings.Repeat("a", MaxHeaderBytes+10) + "\nX-After: 1\n\nbody"
	if _, err := ParseHeader(crlf(msg)); !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
	many := "From: a@example.org\n" + strings.Repeat("X-A: 1\n", MaxHeaderFields+1) + "\n"
	if _, err := ParseHeader(crlf(many)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("many fields: err = %v, want ErrMalformed", err)
	}
}

func TestParseHeaderReads(t *testing.T) {
	raw := crlf("Received: from x\n\tby y\nFrom: \"Alice Example\" <Alice@Example.org>\nSender: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\n" +
		"To: a@partner.test, \"B\" <B@Partner.test>\nCc: undisclosed-recipients:;\nSubject: =?utf-8?q?[secure]_Gr=C3=BC=C3=9Fe?=\n" +
		"Content-Type: Application/PKCS7-MIME; smime-type=enveloped-data; name=smime.p7m\nContent-Transfer-Encoding: BASE64\n\nAAAA\n")
	h, err := ParseHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	if h.From.Address != "Alice@Example.org" || h.From.Lower() != "alice@example.org" || h.From.Name != "Alice Example" {
		t.Errorf("From = %+v", h.From)
	}
	if h.Sender == nil || h.Sender.Name != "Jörg" {
		t.Errorf("Sender = %+v", h.Sender)
	}
	if h.Subject != "[secure] Grüße" {
		t.Errorf("Subject = %q", h.Subject)
	}
	if h.MediaType != "application/pkcs7-mime" || h.Params["smime-type"] != "enveloped-data" || h.TransferEncoding != "base64" {
		t.Errorf("type = %q %v %q", h.MediaType, h.Params, h.TransferEncoding)
	}
	if got := string(raw[h.End:]); got != "AAAA\r\n" {
		t.Errorf("body = %q", got)
	}
	if f := h.Field("received"); f == nil || f.Value != "from x by y" || f.Line != 1 {
		t.Errorf("Received = %+v", f)
	}
	// Cc is a group with no members: To and Cc parse, so a and b are
	// visible and anyone else is a Bcc.
	if !h.IsVisible("A@partner.test") || !h.IsVisible("b@partner.test") || h.IsVisible("c@partner.test") {
		t.Errorf("visible = %v ok=%v", h.Visible, h.VisibleOK)
	}
}

func TestUnparseableToMakesEveryoneBcc(t *testing.T) {
	h, err := ParseHeader(crlf("From: a@example.org\nTo: a@partner.test, <<broken\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h.IsVisible("a@partner.test") {
		t.Error("a recipient counts as visible although To does not parse")
	}
}

func TestBadContentTypeIsNoType(t *testing.T) {
	h, err := ParseHeader(crlf("From: a@example.org\nContent-Type: application/pkcs7-mime; smime-type=\"enveloped-data\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h.MediaType != "" || h.ContentTypeErr == nil {
		t.Errorf("type = %q err=%v; want none", h.MediaType, h.ContentTypeErr)
	}
}

func TestRewriteText(t *testing.T) {
	raw := crlf("From: a@example.org\nSubject: [secure] offer\n [pw:Secret-123456]\nThread-Topic: =?utf-8?q?=5Bsecure=5D_offer_=5Bpw=3ASecret-123456=5D?=\n" +
		"X-Note: keep\nReceived: by [pw:Secret-123456]\n\nbody [pw:Secret-123456]\n")
	h, err := ParseHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	out := h.RewriteText(raw, func(f *Field) string {
		return strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(f.Decoded, "[pw:Secret-123456]", ""), "[secure]", ""))
	})
	h2, err := ParseHeader(out)
	if err != nil {
		t.Fatalf("rewritten header does not parse: %v\n%s", err, out)
	}
	if h2.Subject != "offer" || h2.Field("Thread-Topic").Decoded != "offer" || h2.Get("X-Note") != "keep" {
		t.Errorf("rewritten: %q %q %q", h2.Subject, h2.Field("Thread-Topic").Decoded, h2.Get("X-Note"))
	}
	// Structured fields and the body are not touched.
	if h2.Get("Received") != "by [pw:Secret-123456]" || string(out[h2.End:]) != "body [pw:Secret-123456]\r\n" {
		t.Errorf("structured field or body changed:\n%s", out)
	}
	if same := h.RewriteText(raw, func(f *Field) string { return f.Decoded }); &same[0] != &raw[0] {
		t.Error("an unchanged header was copied")
	}
}

func TestFormatFieldFolds(t *testing.T) {
	long := strings.Repeat("wörd ", 60)
	v := FormatField("Subject", long)
	for _, l := range strings.Split(strings.TrimSuffix(v, "\r\n"), "\r\n") {
		if len(l) > 100 { // an encoded word is up to 75 characters
			t.Errorf("line of %d: %q", len(l), l)
		}
	}
	h, err := ParseHeader([]byte("From: a@example.org\r\n" + v + "\r\n"))
	if err != nil || h.Subject != long {
		t.Fatalf("round trip: %q, %v", h.Subject, err)
	}
}

func TestParseHeaderHugeField(t *testing.T) {
	msg := "From: a@example.org\nX-Big: a" + strings.Repeat("\n "+strings.Repeat("b", 998), 300) + "\n\nbody"
	_, err := ParseHeader(crlf(msg))
	var e *Error
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &e) || e.Field != "X-Big" || e.Line != 2 {
		t.Fatalf("err = %v, want ErrTooLarge at X-Big line 2", err)
	}
}

// Only ASCII letters fold: a look-alike that Unicode folds to a user's
// address (Kelvin sign K → k, long s ſ → s) stays another address.
func TestAddressCase(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"Alice@Example.ORG", "alice@example.org", true},
		{"kim@example.org", "\u212aim@example.org", false},
		{"sam@example.org", "\u017fam@example.org", false},
		{"jörg@example.org", "JöRG@example.org", true},
		{"jörg@example.org", "JÖRG@example.org", false},
	} {
		if got := SameAddress(tc.a, tc.b); got != tc.same {
			t.Errorf("SameAddress(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := LowerASCII(tc.a) == LowerASCII(tc.b); got != tc.same {
			t.Errorf("LowerASCII(%q) == LowerASCII(%q): %v", tc.a, tc.b, got)
		}
	}
}
