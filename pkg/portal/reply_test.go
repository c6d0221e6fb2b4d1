package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// testMaxReply is smtp.max_message_bytes in the fixture.
const testMaxReply = 256 << 10

const (
	bob       = "bob@partner.example"
	bobPW     = "violet tram humming 42"
	alice     = "alice@example.org"
	origMsgID = "<orig-1@example.org>"
)

var replyLinkRE = regexp.MustCompile(`^https://secure\.example\.test/r/([A-Za-z0-9_-]{43})$`)

// replyLink stores rcpt's PDF password and makes a reply link for a
// message from alice, as the sealer does; it returns the token.
func (f *fixture) replyLink(t testing.TB, rcpt, pw, msgID, subject string) string {
	t.Helper()
	ctx := context.Background()
	if err := f.st.SetPDFPassword(ctx, rcpt, []byte(pw), Source); err != nil {
		t.Fatal(err)
	}
	link, err := f.srv.ReplyLink(ctx, ReplyQuery{Recipient: rcpt, Sender: alice, MessageID: msgID, Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	m := replyLinkRE.FindStringSubmatch(link)
	if m == nil {
		t.Fatalf("reply link %q", link)
	}
	return m[1]
}

type upload struct{ name, content string }

// replyForm is a multipart body with the fields in the page's order.
type replyForm struct {
	csrf, password, text string
	files                []upload
	fileFirst            bool // a file part before the password (an attacker's order)
}

func (rf replyForm) body(t testing.TB) (io.Reader, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	file := func(u upload) {
		w, err := mw.CreateFormFile("files", u.name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(w, u.content)
	}
	_ = mw.WriteField("csrf", rf.csrf)
	if rf.fileFirst {
		file(upload{"early.txt", "early"})
	}
	_ = mw.WriteField("password", rf.password)
	_ = mw.WriteField("text", rf.text)
	for _, u := range rf.files {
		file(u)
	}
	_ = mw.Close()
	return &b, mw.FormDataContentType()
}

// postReply opens the reply page for token (for its CSRF token, unless
// rf has one) and posts rf.
func (c *client) postReply(t testing.TB, h http.Handler, token string, rf replyForm, chunked bool) *httptest.ResponseRecorder {
	t.Helper()
	if rf.csrf == "" {
		get := c.do(h, "GET", "/r/"+token, nil)
		if get.Code != http.StatusOK {
			t.Fatalf("GET /r/: %d\n%s", get.Code, get.Body)
		}
		rf.csrf = csrfOf(t, get)
	}
	body, ct := rf.body(t)
	if chunked {
		body = io.MultiReader(body) // hides the length: no Content-Length
	}
	r := httptest.NewRequest("POST", "https://secure.example.test/r/"+token, body)
	if chunked {
		r.ContentLength = -1
	}
	r.RemoteAddr = c.addr
	r.Header.Set("Content-Type", ct)
	for k, v := range c.header {
		r.Header[k] = v
	}
	for _, ck := range c.cookies {
		r.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// parsedReply is a queued reply, parsed as a mail client would.
type parsedReply struct {
	header mail.Header
	text   string
	files  map[string][]byte
	types  map[string]string
}

func parseReply(t testing.TB, data []byte) parsedReply {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the reply does not parse: %v\n%s", err, data)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("reply Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	pr := parsedReply{header: msg.Header, files: map[string][]byte{}, types: map[string]string{}}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		if p.FileName() == "" {
			pr.text = string(b)
			continue
		}
		if p.Header.Get("Content-Transfer-Encoding") != "base64" {
			t.Fatalf("attachment %q not base64", p.FileName())
		}
		dec, err := io.ReadAll(base64Decoder(b))
		if err != nil {
			t.Fatalf("attachment %q: %v", p.FileName(), err)
		}
		pr.files[p.FileName()] = dec
		pr.types[p.FileName()] = p.Header.Get("Content-Type")
	}
	return pr
}

// A reply goes from the recipient to the original sender: threaded under
// the original (In-Reply-To, References), Re: subject, a fresh
// Message-ID, the text, and every file byte for byte.
func TestReplyDelivered(t *testing.T) {
	f := newFixture(t)
	tok := f.replyLink(t, bob, bobPW, origMsgID, "Quarterly figures")
	c := newClient("198.51.100.20")
	page := c.do(f.h, "GET", "/r/"+tok, nil)
	body := page.Body.String()
	for _, want := range []string{"Quarterly figures", alice, bob, `for="password"`, `for="text"`, `for="files"`, `enctype="multipart/form-data"`, "262 KB"} {
		if !strings.Contains(body, want) {
			t.Errorf("reply page lacks %q", want)
		}
	}
	// The password comes before the text and the files (the handler
	// checks it before reading any file).
	if i, j := strings.Index(body, `name="password"`), strings.Index(body, `name="files"`); i < 0 || j < i {
		t.Error("the form does not put the password before the files")
	}
	bin := make([]byte, 100<<10)
	_, _ = rand.Read(bin)
	w := c.postReply(t, f.h, tok, replyForm{password: bobPW, text: "Thanks, figures received.\r\nBob", files: []upload{
		{"report.pdf", "%PDF-1.7\n" + string(bin)},
		{"notes.txt", "plain notes\n"},
	}}, false)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Your reply is on its way") {
		t.Fatalf("POST: %d\n%s", w.Code, w.Body)
	}
	replies := f.outbox.all()
	if len(replies) != 1 || replies[0].from != bob || replies[0].to[0] != alice {
		t.Fatalf("queued %+v", replies)
	}
	r := parseReply(t, replies[0].data)
	for k, want := range map[string]string{"From": bob, "To": alice, "Subject": "Re: Quarterly figures",
		"In-Reply-To": origMsgID, "References": origMsgID, "X-Sealgate-Portal": "reply", "MIME-Version": "1.0"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if id := r.header.Get("Message-ID"); !strings.HasSuffix(id, "@gw.example.test>") || id == origMsgID {
		t.Errorf("Message-ID %q", id)
	}
	if _, err := r.header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if r.text != "Thanks, figures received.\r\nBob\r\n" {
		t.Errorf("text %q", r.text)
	}
	if !bytes.Equal(r.files["report.pdf"], []byte("%PDF-1.7\n"+string(bin))) || string(r.files["notes.txt"]) != "plain notes\n" {
		t.Errorf("attachments differ: %d files", len(r.files))
	}
	if !strings.HasPrefix(r.types["report.pdf"], "application/pdf") || !strings.HasPrefix(r.types["notes.txt"], "text/plain") {
		t.Errorf("types %v", r.types)
	}
	// A link works more than once (a second thought), each a new message.
	if w := c.postReply(t, f.h, tok, replyForm{password: bobPW, text: "One more thing."}, false); w.Code != http.StatusOK {
		t.Fatalf("second reply: %d", w.Code)
	}
	if n := len(f.outbox.all()); n != 2 {
		t.Fatalf("%d replies queued, want 2", n)
	}
}

// Every link is bound to its message: two links, two messages, each
// reply threads under its own original; a link with a malformed
// Message-ID threads under nothing rather than a forged field.
func TestReplyBoundToItsMessage(t *testing.T) {
	f := newFixture(t)
	c := newClient("198.51.100.21")
	for _, tc := range []struct{ msgID, want string }{
		{"<one@example.org>", "<one@example.org>"},
		{"<two@example.org>", "<two@example.org>"},
		{"<x@y>\r\nBcc: evil@attacker.example", ""},
		{"no-brackets@example.org", ""},
	} {
		tok := f.replyLink(t, bob, bobPW, tc.msgID, "s")
		if w := c.postReply(t, f.h, tok, replyForm{password: bobPW, text: "hi"}, false); w.Code != http.StatusOK {
			t.Fatalf("%q: %d", tc.msgID, w.Code)
		}
		all := f.outbox.all()
		r := parseReply(t, all[len(all)-1].data)
		if got := r.header.Get("In-Reply-To"); got != tc.want {
			t.Errorf("%q: In-Reply-To %q, want %q", tc.msgID, got, tc.want)
		}
		if r.header.Get("Bcc") != "" {
			t.Errorf("%q: a Bcc field got in", tc.msgID)
		}
	}
}

// The attacker's attempts: each is refused and queues nothing.
func TestReplyRefusals(t *testing.T) {
	big := strings.Repeat("A", testMaxReply)
	cases := []struct {
		name   string
		setup  func(f *fixture) (token string, c *client)
		form   replyForm
		chunk  bool
		status int
		page   string
	}{
		{"wrong password", func(f *fixture) (string, *client) {
			return f.replyLink(t, bob, bobPW, origMsgID, "s"), newClient("203.0.113.1")
		}, replyForm{password: bobPW + "x", text: "keep my text"}, false, http.StatusUnprocessableEntity, "not the password"},
		{"another recipient's password", func(f *fixture) (string, *client) {
			_ = f.replyLink(t, "carol@partner.example", "carols own password 7", origMsgID, "s")
			return f.replyLink(t, bob, bobPW, origMsgID, "s"), newClient("203.0.113.2")
		}, replyForm{password: "carols own password 7"}, false, http.StatusUnprocessableEntity, "not the password"},
		{"no password", func(f *fixture) (string, *client) {
			return f.replyLink(t, bob, bobPW, origMsgID, "s"), newClient("203.0.113.3")
		}, replyForm{}, false, http.StatusUnprocessableEntity, "not the password"},
		{"file before the password", func(f *fixture) (string, *client) {
			return f.replyLink(t, bob, bobPW, origMsgID, "s"), newClient("203.0.113.4")
		}, replyForm{password: bobPW, fileFirst: true}, false, http.StatusUnprocessableEntity, "not the password"},
		{"oversized upload (Content-Length)", func(f *fixture) (string, *client) {
			return f.replyLink(t, bob, bobPW, origMsgID, "s"), newClient("203.0.113.5")
		}, replyForm{password: bobPW, files: []upload{{"big.bin", big + big}}}, false, http.StatusRequestEntityTooLarge, "too large"},
		{"oversized upload (streamed, no length)", func(f *fixture) (string, *client) {
			return f.replyLink(t, bob, bobPW, origMsgID, "s"), newClient("203.0.113.6")
		}, replyForm{password: bobPW, files: []upload{{"big.bin", big}}}, true, http.StatusRequestEntityTooLarge, "too large"},
		{"oversized text", func(f *fixture) (string, *client) {
			return f.replyLink(t, bob, bobPW, origMsgID, "s"), newClient("203.0.113.7")
		}, replyForm{password: bobPW, text: strings.Repeat("x", maxTextBytes+1)}, true, http.StatusRequestEntityTooLarge, "too large"},
		{"invitation link on the reply page", func(f *fixture) (string, *client) {
			return f.invite(t, "dave@partner.example", alice), newClient("203.0.113.8")
		}, replyForm{csrf: "x", password: bobPW}, false, http.StatusNotFound, "cannot be used"},
		{"expired link", func(f *fixture) (string, *client) {
			f.srv.Now = func() time.Time { return time.Now().Add(-31 * 24 * time.Hour) }
			defer func() { f.srv.Now = time.Now }()
			return f.replyLink(t, bob, bobPW, origMsgID, "s"), newClient("203.0.113.9")
		}, replyForm{csrf: "x", password: bobPW}, false, http.StatusNotFound, "cannot be used"},
		{"no CSRF token", func(f *fixture) (string, *client) {
			tok := f.replyLink(t, bob, bobPW, origMsgID, "s")
			c := newClient("203.0.113.10")
			c.do(f.h, "GET", "/r/"+tok, nil) // has the cookie, forges the field
			return tok, c
		}, replyForm{csrf: "forged", password: bobPW}, false, http.StatusForbidden, "went wrong"},
		{"cross-site post", func(f *fixture) (string, *client) {
			tok := f.replyLink(t, bob, bobPW, origMsgID, "s")
			c := newClient("203.0.113.11")
			c.header.Set("Sec-Fetch-Site", "cross-site")
			return tok, c
		}, replyForm{csrf: "x", password: bobPW}, false, http.StatusForbidden, "went wrong"},
		{"foreign origin", func(f *fixture) (string, *client) {
			tok := f.replyLink(t, bob, bobPW, origMsgID, "s")
			c := newClient("203.0.113.12")
			c.header.Set("Origin", "https://evil.example")
			return tok, c
		}, replyForm{csrf: "x", password: bobPW}, false, http.StatusForbidden, "went wrong"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tok, c := tc.setup(f)
			if tc.form.csrf == "x" {
				// Pages that refuse before the form: post without one.
				tc.form.csrf = strings.Repeat("A", 43)
			}
			w := c.postReply(t, f.h, tok, tc.form, tc.chunk)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.page) {
				t.Fatalf("%d, want %d with %q\n%s", w.Code, tc.status, tc.page, w.Body)
			}
			if n := len(f.outbox.all()); n != 0 {
				t.Fatalf("%d replies queued", n)
			}
			if tc.status == http.StatusUnprocessableEntity && tc.form.text != "" && !strings.Contains(w.Body.String(), tc.form.text) {
				t.Error("the refused form lost the text")
			}
		})
	}
}

// Wrong passwords lock the link (and the address) out: after five, even
// the right password waits; another link from another address still works.
func TestReplyPasswordLockout(t *testing.T) {
	f := newFixture(t)
	tok := f.replyLink(t, bob, bobPW, origMsgID, "s")
	c := newClient("203.0.113.30")
	for i := range freeFailures {
		if w := c.postReply(t, f.h, tok, replyForm{password: fmt.Sprintf("guess %d", i)}, false); w.Code != http.StatusUnprocessableEntity {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	// The right password from a fresh address: the token is locked.
	other := newClient("203.0.113.31")
	if w := other.do(f.h, "GET", "/r/"+tok, nil); w.Code != http.StatusTooManyRequests {
		t.Fatalf("locked link: %d, want 429", w.Code)
	}
	if n := len(f.outbox.all()); n != 0 {
		t.Fatalf("%d replies queued", n)
	}
	tok2 := f.replyLink(t, "erin@partner.example", "erins long password 9", "<m2@example.org>", "s")
	if w := other.postReply(t, f.h, tok2, replyForm{password: "erins long password 9"}, false); w.Code != http.StatusOK {
		t.Fatalf("another link from another address: %d", w.Code)
	}
}

// The subject from the mail is text on the page, never markup.
func TestReplySubjectEscaped(t *testing.T) {
	f := newFixture(t)
	tok := f.replyLink(t, bob, bobPW, origMsgID, `<script>alert(1)</script> & "quotes"`)
	body := newClient("203.0.113.40").do(f.h, "GET", "/r/"+tok, nil).Body.String()
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;") {
		t.Fatalf("subject not escaped:\n%s", body)
	}
}

// Text typed into the form stays in the body: a CRLF with header lines in
// it adds no field, and the recipients stay the original sender alone.
func TestReplyHeaderInjection(t *testing.T) {
	f := newFixture(t)
	tok := f.replyLink(t, bob, bobPW, origMsgID, "s\r\nBcc: evil@attacker.example")
	c := newClient("203.0.113.50")
	text := "\r\nBcc: evil@attacker.example\r\n\r\nX-Evil: 1\r\n.\r\nMAIL FROM:<x@y>\r\n"
	if w := c.postReply(t, f.h, tok, replyForm{password: bobPW, text: text, files: []upload{{"a\r\nBcc: evil@attacker.example.txt", "x"}}}, false); w.Code != http.StatusOK {
		t.Fatalf("%d\n%s", w.Code, w.Body)
	}
	all := f.outbox.all()
	r := parseReply(t, all[0].data)
	if r.header.Get("Bcc") != "" || r.header.Get("X-Evil") != "" || len(all[0].to) != 1 || all[0].to[0] != alice {
		t.Fatalf("header injected: %v → %v", r.header, all[0].to)
	}
	if !strings.Contains(r.text, "X-Evil: 1") {
		t.Error("the text was not kept in the body")
	}
	if got := r.header.Get("Subject"); strings.ContainsAny(got, "\r\n") {
		t.Errorf("subject %q", got)
	}
}

func TestSafeFileName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{`..\..\Windows\system32\evil.dll`, "evil.dll"},
		{"C:evil.exe", "C_evil.exe"},
		{"a\r\nBcc: x@y.txt", "aBcc_ x@y.txt"},
		{"=?utf-8?b?Li4vLi4vZXRjL3Bhc3N3ZA==?=", "passwd"},               // encoded word decoding to a path
		{"=?utf-8?q?=3D=3Futf-8=3Fb=3FLi4v=3F=3D?=", "=_utf-8_b_Li4v_="}, // an encoded word inside one
		{"invoice\u202Efdp.exe", "invoicefdp.exe"},                       // right-to-left override
		{".htaccess", "htaccess"},
		{"  trailing dots... ", "trailing dots"},
		{"CON.txt", "_CON.txt"},
		{"", "attachment"},
		{"...", "attachment"},
		{"Grüße.txt", "Grüße.txt"},
		{"a\x00b.txt", "ab.txt"},
	} {
		if got := safeFileName(tc.in); got != tc.want {
			t.Errorf("safeFileName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzSafeFileName(f *testing.F) {
	for _, s := range []string{"a.txt", "../x", "=?utf-8?b?Li4v?=", "\u202e", "CON", "a\r\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := safeFileName(in)
		if got == "" || len(got) > 151 || !utf8.ValidString(got) {
			t.Fatalf("safeFileName(%q) = %q", in, got)
		}
		if strings.ContainsAny(got, "/\\\r\n\x00?\"<>|:*") || strings.HasPrefix(got, ".") || strings.Contains(got, "\u202e") {
			t.Fatalf("safeFileName(%q) = %q", in, got)
		}
		// In a header it stays one parameter of one field.
		v := mime.FormatMediaType("attachment", map[string]string{"filename": got})
		if _, params, err := mime.ParseMediaType(v); err != nil || params["filename"] != got {
			t.Fatalf("%q does not round-trip in Content-Disposition: %q %v", got, v, err)
		}
	})
}

func TestEncodeWords(t *testing.T) {
	dec := new(mime.WordDecoder)
	for _, in := range []string{"Re: plain", "Re: Grüße aus Köln", "Re: =?utf-8?q?smuggled?=", "Re: " + strings.Repeat("ä", 300)} {
		enc := encodeWords(in)
		for _, line := range strings.Split(enc, "\r\n") {
			if len(line) > 78 {
				t.Errorf("%q: line of %d bytes", in, len(line))
			}
		}
		got, err := dec.DecodeHeader(strings.ReplaceAll(enc, "\r\n", ""))
		if err != nil || got != in {
			t.Errorf("encodeWords(%q) = %q decodes to %q, %v", in, enc, got, err)
		}
	}
}

func base64Decoder(b []byte) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.ReplaceAll(b, []byte("\r\n"), nil)))
}

// A link with its password cannot flood the sender: after freeReplies
// replies the next waits, and nothing more is queued.
func TestReplyRateLimitPerLink(t *testing.T) {
	f := newFixture(t)
	tok := f.replyLink(t, bob, bobPW, origMsgID, "s")
	c := newClient("203.0.113.60")
	for i := range freeReplies {
		if w := c.postReply(t, f.h, tok, replyForm{password: bobPW, text: "again"}, false); w.Code != http.StatusOK {
			t.Fatalf("reply %d: %d", i, w.Code)
		}
	}
	w := c.postReply(t, f.h, tok, replyForm{csrf: strings.Repeat("A", 43), password: bobPW, text: "flood"}, false)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("reply %d: %d, want 429", freeReplies+1, w.Code)
	}
	if n := len(f.outbox.all()); n != freeReplies {
		t.Fatalf("%d replies queued, want %d", n, freeReplies)
	}
	if replyDelay(freeReplies) <= 0 || replyDelay(freeReplies+10) != time.Hour {
		t.Errorf("delays %v %v", replyDelay(freeReplies), replyDelay(freeReplies+10))
	}
}

// slowBody hands out its data in pieces with pauses, as a slow uplink.
type slowBody struct {
	data  []byte
	piece int
	pause time.Duration
}

func (s *slowBody) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	n := copy(p[:min(len(p), s.piece)], s.data)
	s.data = s.data[n:]
	return n, nil
}

// A reply upload on a valid link may take longer than the listener's
// ReadTimeout (serve's portal has one minute; a 50 MB reply on a slow
// line needs more): the handler extends its own deadline.
func TestReplyUploadOutlastsReadTimeout(t *testing.T) {
	f := newFixture(t)
	tok := f.replyLink(t, bob, bobPW, origMsgID, "s")
	srv := httptest.NewUnstartedServer(f.h)
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.StartTLS()
	defer srv.Close()
	c := newClient("127.0.0.1")
	csrf := csrfOf(t, c.do(f.h, "GET", "/r/"+tok, nil))
	body, ct := replyForm{csrf: csrf, password: bobPW, text: "slow", files: []upload{{"f.bin", strings.Repeat("z", 64<<10)}}}.body(t)
	all, _ := io.ReadAll(body)
	req, _ := http.NewRequest("POST", srv.URL+"/r/"+tok, &slowBody{data: all, piece: 8 << 10, pause: 150 * time.Millisecond})
	req.ContentLength = int64(len(all))
	req.Header.Set("Content-Type", ct)
	for _, ck := range c.cookies {
		req.AddCookie(ck)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("a slow upload was cut off: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(f.outbox.all()) != 1 {
		t.Fatalf("slow upload: %d, %d replies", resp.StatusCode, len(f.outbox.all()))
	}
}

// pdf.hide_subject: the link keeps no subject, the page shows none before
// the password, and the reply's subject is neutral.
func TestReplyHideSubject(t *testing.T) {
	f := newFixture(t)
	f.srv.HideSubject = true
	tok := f.replyLink(t, bob, bobPW, origMsgID, "Takeover of Contoso")
	hash, _ := tokenHash(tok)
	if stored, err := f.st.LivePortalToken(context.Background(), hash); err != nil || stored.Subject != "" {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	c := newClient("203.0.113.70")
	if page := c.do(f.h, "GET", "/r/"+tok, nil).Body.String(); strings.Contains(page, "Contoso") || strings.Contains(page, "Subject:") {
		t.Fatal("the reply page shows the subject")
	}
	if w := c.postReply(t, f.h, tok, replyForm{password: bobPW, text: "ok"}, false); w.Code != http.StatusOK {
		t.Fatal(w.Code)
	}
	r := parseReply(t, f.outbox.all()[0].data)
	if got, _ := new(mime.WordDecoder).DecodeHeader(r.header.Get("Subject")); got != "Reply via secure mail" {
		t.Errorf("reply subject %q", got)
	}
	if r.header.Get("In-Reply-To") != origMsgID {
		t.Error("threading lost")
	}
}
