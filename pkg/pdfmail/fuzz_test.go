package pdfmail

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzParseAndRender feeds arbitrary bytes through the path outside input
// takes: MIME parsing, then page rendering. It must return a PDF or an
// error, never panic or hang.
func FuzzParseAndRender(f *testing.F) {
	f.Add(buildMessage("Grüße [pw:x]", testPart{contentType: "text/plain; charset=utf-8", body: []byte("Hallo „Welt“ €\r\n")}))
	f.Add(buildMessage("html", testPart{contentType: "text/html; charset=utf-8", body: []byte(`<p>a <a href="https://x.example">b</a></p>`)}))
	f.Add(buildMessage("att", testPart{contentType: "text/plain", body: []byte("x")}, testPart{contentType: "application/pdf", filename: "../a/b.pdf", body: []byte("%PDF")}))
	f.Add([]byte("Subject: x\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n--a--\r\n"))
	f.Add([]byte("Subject: x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody"))
	f.Add([]byte("Content-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=FF=FEa=00"))
	f.Add([]byte("From: \"unterminated <a@b\r\nDate: yesterday\r\n\r\n\t\x00\x1b[31m"))
	f.Add(buildMessage("שלום (1) 👍", testPart{contentType: "text/plain; charset=utf-8", body: []byte("שלום John 42.\r\nبِسْمِ لا \u202Eabc\u202C 🎉\r\n")}))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		pm, err := parseMessage(bytes.NewReader(data), newOriginalCapture())
		if err != nil {
			if pm != nil {
				t.Fatal("parse returned a message and an error")
			}
			return
		}
		if err := prepareHTML(pm); err != nil {
			t.Fatalf("prepareHTML: %v", err) // it has a fallback for every document
		}
		if _, _, err := renderPages(pm, languages["en"], fixedTime, fontSet{fontRegular, fontBold, builtinChain()}); err != nil && !errors.Is(err, ErrMalformed) {
			t.Logf("render error (allowed, must not panic): %v", err)
		}
	})
}

// FuzzParseMessage covers the MIME parser alone, which runs far more
// inputs per second than the parse+render target.
func FuzzParseMessage(f *testing.F) {
	f.Add(buildMessage("x", testPart{contentType: "text/plain", body: []byte("x")}, testPart{contentType: "image/png", filename: "a\u202Egnp.exe", body: []byte("x")}))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"a\"\r\n\r\n--a\r\nContent-Disposition: attachment; filename*=utf-8''%FF%FE\r\n\r\nx\r\n--a--"))
	f.Add([]byte("Subject:\xff\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pm, err := parseMessage(bytes.NewReader(data), nil)
		if err != nil {
			return
		}
		for _, a := range pm.Attachments {
			if a.Name == "" || strings.ContainsAny(a.Name, "/\\\x00") {
				t.Errorf("unsafe attachment name %q", a.Name)
			}
		}
	})
}

// FuzzShapeParagraph feeds hostile text to the text layout's shaping entry
// point (paragraph → shapeRuns → the HarfBuzz port → drawShaped): lone
// marks, floods of joiners and combining marks, scripts mixed inside a
// word, right-to-left embeddings around Indic text. It must draw a PDF,
// never panic; runs are bounded (maxShapedRun) so time grows with the
// text, not faster (TestShapedRunsAreBounded).
func FuzzShapeParagraph(f *testing.F) {
	f.Add("हिन्दी क्षत्रिय प्रति ที่นี่ น้ำ கொ কৌশল")
	f.Add("\u093f\u094d\u200d\u200c\u0e49 ि")
	f.Add("क" + strings.Repeat("\u093f", 10000))
	f.Add(strings.Repeat("\u200d\u200c", 2000) + "क्ष")
	f.Add("\u202eहिन्दी\u202c שלום कर्म مرحبا")
	f.Add("ក្ស្រ ខ្មែរ မြန်မာ ລາວ ශ්\u200dරී ਪੰਜਾਬੀ ગુજરાતી ଓଡ଼ିଆ తెలుగు ಕನ್ನಡ മലയാളം བོད")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 1<<16 {
			return
		}
		tw := newTestWriter(t)
		tw.block(pageMargin, "", bodySize, lineHeight, printable(s))
		if err := tw.pdf.Output(io.Discard); err != nil {
			t.Fatalf("no PDF: %v", err)
		}
	})
}
