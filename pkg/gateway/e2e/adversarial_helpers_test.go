package e2e

// Helpers for adversarial_test.go: an SMTP client that reports the exact
// reply where a submission ended, readers for what the gateway wrote into
// its outbox and queue, and the peer checks (openssl, qpdf, poppler) that
// decide whether a copy leaked.

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// smtpReply is the server's answer at the step where a submission ended:
// the first step that was not accepted, or the end of DATA.
type smtpReply struct {
	Stage string // connect, starttls, auth, mail, rcpt, data, end-of-data
	Code  int    // 0: the connection broke instead of a reply
	Text  string // starts with the enhanced status code, e.g. "5.7.1 ..."
}

func (r smtpReply) String() string { return fmt.Sprintf("%s: %d %s", r.Stage, r.Code, r.Text) }

// is reports whether the reply is code with the enhanced status enhanced
// ("" accepts any).
func (r smtpReply) is(code int, enhanced string) bool {
	return r.Code == code && strings.HasPrefix(r.Text, enhanced)
}

// submission is one SMTP transaction. Data is the message with CRLF line
// ends; it is sent as it is (only dot-stuffed), so that tests can put bare
// CRs and NULs on the wire.
type submission struct {
	From, User, Password string // AUTH PLAIN as User when User != ""
	To                   []string
	Data                 []byte
	NoTLS                bool // skip STARTTLS (AUTH then goes over plain text)
}

// submit runs s against addr and returns where it ended. It fails the test
// only when nothing listens.
func submit(t *testing.T, addr string, s submission) smtpReply {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return replyOf("connect", err)
	}
	if !s.NoTLS {
		// The gateway's self-signed certificate: what is tested here is
		// what the gateway does after the handshake, not who it is.
		if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
			return replyOf("starttls", err)
		}
	}
	if s.User != "" {
		// Raw, because net/smtp refuses PLAIN without TLS and the tests
		// want the server's answer to exactly that.
		resp := base64.StdEncoding.EncodeToString([]byte("\x00" + s.User + "\x00" + s.Password))
		id, err := c.Text.Cmd("AUTH PLAIN %s", resp)
		if err != nil {
			return replyOf("auth", err)
		}
		c.Text.StartResponse(id)
		_, _, err = c.Text.ReadResponse(235)
		c.Text.EndResponse(id)
		if err != nil {
			return replyOf("auth", err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return replyOf("mail", err)
	}
	for _, r := range s.To {
		if err := c.Rcpt(r); err != nil {
			return replyOf("rcpt", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return replyOf("data", err)
	}
	if _, err := w.Write(s.Data); err != nil {
		return replyOf("data", err)
	}
	if err := w.Close(); err != nil {
		return replyOf("end-of-data", err)
	}
	_ = c.Quit()
	return smtpReply{Stage: "end-of-data", Code: 250}
}

func replyOf(stage string, err error) smtpReply {
	var te *textproto.Error
	if errors.As(err, &te) {
		return smtpReply{Stage: stage, Code: te.Code, Text: te.Msg}
	}
	return smtpReply{Stage: stage, Text: err.Error()}
}

// rfc5322 joins header fields and a body into a message with CRLF line
// ends. The fields are written exactly as given, duplicates and broken
// lines included.
func rfc5322(fields []string, body string) []byte {
	var b bytes.Buffer
	for _, f := range fields {
		b.WriteString(f + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(crlf(body))
	if !strings.HasSuffix(body, "\n") {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// crlf turns LF or CRLF line ends into CRLF.
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// fields is a well-formed header for a test message; extra fields follow.
func fields(from, to, subject string, extra ...string) []string {
	f := []string{"From: " + from, "To: " + to, "Subject: " + subject,
		"Date: Mon, 02 Mar 2026 10:00:00 +0000", "Message-ID: <" + randomToken() + "@client.test>"}
	return append(f, extra...)
}

func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// outboxFile is one parcel the gateway wrote: its envelope recipients and
// the message as the next hop would see it (envelope lines removed).
type outboxFile struct {
	Name  string
	Rcpts []string
	Msg   []byte
	Mod   time.Time
}

// outboxFiles lists every parcel in the outbox. Unlike outbox() it keeps
// several files per recipient and never fails on a message it cannot parse
// (a leak may well be unparseable).
func (g *gw) outboxFiles() []outboxFile {
	var out []outboxFile
	files, _ := filepath.Glob(filepath.Join(g.dir, "outbox", "*.eml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		st, err := os.Stat(f)
		if err != nil {
			continue
		}
		of := outboxFile{Name: filepath.Base(f), Msg: stripEnvelopeFields(b), Mod: st.ModTime()}
		if line, _, ok := bytes.Cut(b[bytes.Index(b, []byte("X-Sealgate-Rcpt-To:"))+len("X-Sealgate-Rcpt-To:"):], []byte("\r\n")); ok {
			for _, r := range strings.Split(string(line), ",") {
				of.Rcpts = append(of.Rcpts, strings.TrimSpace(r))
			}
		}
		out = append(out, of)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// filesFor returns the parcels addressed (among others) to rcpt.
func (g *gw) filesFor(rcpt string) []outboxFile {
	var out []outboxFile
	for _, f := range g.outboxFiles() {
		for _, r := range f.Rcpts {
			if strings.EqualFold(r, rcpt) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

type queueEntry struct {
	ID         string   `json:"id"`
	State      string   `json:"state"`
	Recipients []string `json:"recipients"`
	HoldReason string   `json:"hold_reason"`
	LastError  string   `json:"last_error"`
	Node       string   `json:"node"`
	LeaseNode  string   `json:"lease_node"`
	Lane       string   `json:"lane"`
}

// queueEntries is `queue list`; t is the (sub)test that asks, so that a
// failure ends that one and not its parent.
func (g *gw) queueEntries(t *testing.T) []queueEntry {
	t.Helper()
	out, err := exec.Command(sealgateBinary(t), "queue", "list", "-o", "json", "--config", g.config).CombinedOutput()
	if err != nil {
		t.Fatalf("sealgate queue list: %v\n%s", err, out)
	}
	var entries []queueEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("queue list: %v", err)
	}
	return entries
}

// outcome is what became of one recipient: delivered parcels, or the
// queue entry that holds or defers it.
type outcome struct {
	Files []outboxFile
	Entry *queueEntry
}

func (o outcome) String() string {
	if o.Entry != nil {
		return fmt.Sprintf("%s (%s%s)", o.Entry.State, o.Entry.HoldReason, o.Entry.LastError)
	}
	return fmt.Sprintf("delivered in %d parcel(s)", len(o.Files))
}

// waitOutcome polls (no fixed sleep decides anything) until rcpt has a
// parcel in the outbox or is held or deferred in the queue.
func (g *gw) waitOutcome(t *testing.T, rcpt string) outcome {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		if files := g.filesFor(rcpt); len(files) > 0 {
			return outcome{Files: files}
		}
		for _, e := range g.queueEntries(t) {
			if e.State != "held" && e.State != "deferred" {
				continue
			}
			for _, r := range e.Recipients {
				if strings.EqualFold(r, rcpt) {
					return outcome{Entry: &e}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no outcome for %s after 45s; log:\n%s", rcpt, g.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitDelivered is waitOutcome for a recipient whose mail must leave, as
// exactly one parcel.
func (g *gw) waitDelivered(t *testing.T, rcpt string) outboxFile {
	t.Helper()
	o := g.waitOutcome(t, rcpt)
	if o.Entry != nil {
		t.Fatalf("%s: %s, want delivered", rcpt, o)
	}
	if len(o.Files) != 1 {
		t.Fatalf("%s: %d parcels, want 1", rcpt, len(o.Files))
	}
	return o.Files[0]
}

// waitQueueDrained waits until no entry is waiting for its first attempt,
// so that whatever a message set off (notices, splits) has been tried.
func (g *gw) waitQueueDrained(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		busy := false
		for _, e := range g.queueEntries(t) {
			busy = busy || e.State == "queued"
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained after 45s: %+v", g.queueEntries(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mimeLeaf is one non-multipart part of a message, its transfer encoding
// undone.
type mimeLeaf struct {
	Type    string
	Header  textproto.MIMEHeader
	Decoded []byte
}

// leavesOf walks msg's MIME tree. A part whose transfer encoding does not
// decode keeps its raw bytes; a message that does not parse is one leaf.
func leavesOf(msg []byte) []mimeLeaf {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return []mimeLeaf{{Type: "unparseable", Decoded: msg}}
	}
	body, _ := io.ReadAll(m.Body)
	return walkLeaves(textproto.MIMEHeader(m.Header), body, 0)
}

func walkLeaves(h textproto.MIMEHeader, body []byte, depth int) []mimeLeaf {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < 20 {
		var out []mimeLeaf
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(p)
			out = append(out, walkLeaves(p.Header, b, depth+1)...)
		}
		if len(out) > 0 {
			return out
		}
	}
	decoded := body
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		if d, err := io.ReadAll(base64Reader(body)); err == nil {
			decoded = d
		}
	case "quoted-printable":
		if d, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body))); err == nil {
			decoded = d
		}
	}
	return []mimeLeaf{{Type: mt, Header: h, Decoded: decoded}}
}

// leaf returns the first leaf of type mt, or nil.
func leaf(msg []byte, mt string) *mimeLeaf {
	for _, l := range leavesOf(msg) {
		if l.Type == mt {
			return &l
		}
	}
	return nil
}

// leaks reports whether secret can be read from msg without a key: in its
// bytes, in any part with its transfer encoding undone, or in a body that
// is base64 whatever its label says.
func leaks(msg []byte, secret string) bool {
	if bytes.Contains(msg, []byte(secret)) {
		return true
	}
	for _, l := range leavesOf(msg) {
		if bytes.Contains(l.Decoded, []byte(secret)) {
			return true
		}
		if d, err := io.ReadAll(base64Reader(l.Decoded)); err == nil && bytes.Contains(d, []byte(secret)) {
			return true
		}
	}
	return false
}

// assertNoLeak fails when secret is readable in any parcel in the outbox
// except those to the recipients in except (internal pass-through).
func (g *gw) assertNoLeak(t *testing.T, secret string, except ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, r := range except {
		skip[r] = true
	}
	for _, f := range g.outboxFiles() {
		if len(f.Rcpts) == 1 && skip[f.Rcpts[0]] {
			continue
		}
		if leaks(f.Msg, secret) {
			t.Errorf("%q readable in %s to %v:\n%s", secret, f.Name, f.Rcpts, clip(f.Msg))
		}
	}
}

func clip(b []byte) string {
	if len(b) > 1200 {
		return string(b[:1200]) + "\n[...]"
	}
	return string(b)
}

// assertPDFCarrier checks with qpdf and poppler that msg is PDF mail whose
// PDF needs a password, is AES-256 (R 6), opens with password and not with
// another, and (when want != "") shows want once opened.
func assertPDFCarrier(t *testing.T, msg []byte, password, want string) {
	t.Helper()
	pdf := leaf(msg, "application/pdf")
	if pdf == nil {
		t.Fatalf("not PDF mail:\n%s", clip(msg))
	}
	f := testpeer.WriteFile(t, t.TempDir(), "m.pdf", pdf.Decoded)
	if code := testpeer.QPDFRequiresPassword(t, f); code != 0 {
		t.Fatalf("qpdf --requires-password exit %d: the PDF opens without a password", code)
	}
	if r := testpeer.QPDFCheck(t, f, "not-"+password); r.ExitCode == 0 {
		t.Fatal("the PDF opens with a wrong password")
	}
	if r := testpeer.QPDFCheck(t, f, password); r.ExitCode != 0 {
		t.Fatalf("the PDF does not open with its password: exit %d\n%s", r.ExitCode, r.Stderr)
	}
	if enc := testpeer.QPDFShowEncryption(t, f, password); !strings.Contains(enc, "R = 6") || !strings.Contains(enc, "AESv3") {
		t.Fatalf("PDF not encrypted with AES-256 (R 6):\n%s", enc)
	}
	if want != "" {
		if txt := testpeer.PDFText(t, f, password, false); !strings.Contains(txt, want) {
			t.Fatalf("PDF text lacks %q:\n%s", want, txt)
		}
	}
}

// cmsDecrypt runs openssl cms -decrypt on msg as id.
func cmsDecrypt(t *testing.T, msg []byte, id *testpeer.Identity) testpeer.Result {
	t.Helper()
	f := testpeer.WriteFile(t, t.TempDir(), "enc.eml", msg)
	return testpeer.Run(t, nil, "openssl", "cms", "-decrypt", "-in", f, "-recip", id.CertFile, "-inkey", id.KeyFile)
}

// cmsVerify runs openssl cms -verify on the S/MIME signed message msg
// against caFile and returns the content and the signer's certificate.
func cmsVerify(t *testing.T, msg []byte, caFile string) ([]byte, *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	f := testpeer.WriteFile(t, dir, "signed.eml", msg)
	signer := filepath.Join(dir, "signer.pem")
	r := testpeer.Run(t, nil, "openssl", "cms", "-verify", "-in", f, "-CAfile", caFile, "-purpose", "smimesign", "-signer", signer)
	if r.ExitCode != 0 {
		t.Fatalf("openssl cms -verify: exit %d\n%s\nmessage:\n%s", r.ExitCode, r.Stderr, clip(msg))
	}
	return r.Stdout, testpeer.ReadCert(t, signer)
}

// mustEncryptFor is `openssl cms -encrypt` of content to the certificates,
// as the sender's own client would: a MIME entity with CRLF line ends.
func mustEncryptFor(t *testing.T, content []byte, certs ...string) []byte {
	t.Helper()
	in := testpeer.WriteFile(t, t.TempDir(), "plain.eml", content)
	args := []string{"cms", "-encrypt", "-aes256", "-in", in}
	out := testpeer.MustRun(t, nil, "openssl", append(args, certs...)...)
	return []byte(crlf(string(out)))
}

// decodedHeader returns msg's header fields with RFC 2047 encoded words
// decoded (undecodable values as they are), unfolded.
func decodedHeader(msg []byte) []string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	unfolded := strings.NewReplacer("\r\n ", " ", "\r\n\t", " ").Replace(string(head))
	dec := &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil }}
	var out []string
	for _, line := range strings.Split(unfolded, "\r\n") {
		if d, err := dec.DecodeHeader(line); err == nil {
			line = d
		}
		out = append(out, line)
	}
	return out
}

// unreachablePKI is a CA whose certificates point their revocation and
// issuer lookups (AIA) at a closed loopback port. Made with crypto/x509
// because testpeer's openssl PKI writes no AIA.
type unreachablePKI struct {
	RootFile string
	root     *x509.Certificate
	rootKey  *rsa.PrivateKey
	dir      string
	closed   string // http://127.0.0.1:<closed port>/
}

func newUnreachablePKI(t *testing.T) *unreachablePKI {
	t.Helper()
	p := &unreachablePKI{dir: t.TempDir(), closed: fmt.Sprintf("http://127.0.0.1:%d/", testpeer.FreePort(t))}
	p.rootKey = rsaKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Unreachable Test Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	p.root, p.RootFile = p.sign(t, "root", tmpl, nil, nil, &p.rootKey.PublicKey)
	return p
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign makes tmpl a certificate signed by parent (nil: self-signed) and
// writes it as PEM.
func (p *unreachablePKI) sign(t *testing.T, name string, tmpl, parent *x509.Certificate, parentKey *rsa.PrivateKey, pub *rsa.PublicKey) (*x509.Certificate, string) {
	t.Helper()
	if parent == nil {
		parent, parentKey = tmpl, p.rootKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, testpeer.WriteFile(t, p.dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// leafTemplate is an S/MIME encryption certificate for email.
func leafTemplate(serial int64, email string) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: email},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), EmailAddresses: []string{email},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}
}

// ocspUnreachable issues email's certificate directly under the root with
// an OCSP responder (AIA) nobody answers at, and nothing else to judge its
// revocation by.
func (p *unreachablePKI) ocspUnreachable(t *testing.T, email string) string {
	t.Helper()
	tmpl := leafTemplate(10, email)
	tmpl.OCSPServer = []string{p.closed + "ocsp"}
	_, file := p.sign(t, "ocsp-leaf", tmpl, p.root, p.rootKey, &rsaKey(t).PublicKey)
	return file
}

// issuerUnreachable issues email's certificate under an intermediate CA
// that is given to nobody: the chain can only be built by fetching the
// intermediate from the leaf's caIssuers URL, which is closed.
func (p *unreachablePKI) issuerUnreachable(t *testing.T, email string) string {
	t.Helper()
	interKey := rsaKey(t)
	inter, _ := p.sign(t, "inter", &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Unreachable Test Intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, p.root, p.rootKey, &interKey.PublicKey)
	tmpl := leafTemplate(11, email)
	tmpl.IssuingCertificateURL = []string{p.closed + "inter.crt"}
	_, file := p.sign(t, "aia-leaf", tmpl, inter, interKey, &rsaKey(t).PublicKey)
	return file
}
