package e2e

// The adversarial suite of issue #12: each test plays an attacker against
// a real `sealgate serve` and decides with real peers (openssl, qpdf,
// poppler) whether the gateway kept its two promises: what policy says
// must be encrypted never leaves readable, and nothing is signed as, or
// handed a secret for, someone who is not entitled to it.
//
// One gateway process serves every subtest whose configuration allows it;
// outcomes are awaited by polling the outbox and `queue list`, never by
// sleeping a fixed time.

import (
	"bytes"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"mime"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"golang.org/x/crypto/bcrypt"
)

const (
	alice      = "alice@example.org"
	aliceAlias = "alice.alias@example.org"
	bob        = "bob@example.org"
)

// adversarialRules: a confidential label demands S/MIME; signed.test and
// ifkey.test get signed plain copies (sign always / if-key); aia.test is
// opportunistic S/MIME; the [secure] tag and everything else go S/MIME or
// PDF.
const adversarialRules = `[[policy.rules]]
name = "confidential"
header = ["X-Classification: Confidential"]
sign = "always"
encrypt = "smime-required"
on_failure = "hold"

[[policy.rules]]
name = "signed-only"
recipient_domain = ["signed.test"]
sign = "always"
encrypt = "none"

[[policy.rules]]
name = "sign-if-key"
recipient_domain = ["ifkey.test"]
sign = "if-key"
encrypt = "none"

[[policy.rules]]
name = "opportunistic"
recipient_domain = ["aia.test"]
sign = "always"
encrypt = "smime"

[[policy.rules]]
name = "secure-tag"
subject_tag = "[secure]"
strip_subject_tag = true
sign = "always"
encrypt = "smime-or-pdf"
on_failure = "hold"

[[policy.rules]]
name = "default"
sign = "always"
encrypt = "smime-or-pdf"
on_failure = "hold"
`

// withAliceAlias gives alice an alias and adds bob as a second user.
func (g *gw) withAliceAlias() {
	g.editConfig(`name = "Alice Example"`, fmt.Sprintf("name = \"Alice Example\"\naliases = [%q]", aliceAlias))
	g.editConfig("\n[policy]\n", fmt.Sprintf("\n[[users.static]]\nemail = %q\nname = \"Bob Example\"\ngroups = [\"smime-users\"]\n\n[policy]\n", bob))
}

func (g *gw) rootCA() string { return filepath.Join(g.dir, "data", "ca", "root.crt") }

func TestAdversarialServe(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"openssl", "qpdf", "pdftotext"} {
		testpeer.Require(t, p)
	}
	partners := testpeer.NewPKI(t)
	ids := map[string]*testpeer.Identity{}
	for _, e := range []string{"carol@partner.test", "pw-smime@partner.test", "pw-smime-ew@partner.test",
		"bcc-a@partner.test", "bcc-b@partner.test", "bcc-c@partner.test", "John.Doe@partner.test"} {
		ids[e] = partners.Issue(t, e, testpeer.IssueOptions{})
	}
	unreachable := newUnreachablePKI(t)
	aiaLeaf := unreachable.issuerUnreachable(t, "nobody@aia.test")

	g := newGatewayRules(t, adversarialRules, fmt.Sprintf("\n[trust]\nca_files = [%q, %q, %q]\nsystem_roots = false\n",
		partners.RootFile, partners.InterFile, unreachable.RootFile))
	g.withAliceAlias()
	g.editConfig(`password = ["subject", "preset"]`, `password = ["subject", "preset", "generated-to-sender"]`)
	for _, id := range ids {
		g.cli("directory", "import", id.CertFile)
	}
	g.cli("directory", "import", aiaLeaf)
	g.start()

	t.Run("label is not proof", func(t *testing.T) { labelIsNotProof(t, g, ids["carol@partner.test"]) })
	t.Run("genuine S/MIME under smime-required is relayed as it came", func(t *testing.T) {
		genuineEncryptedPassesThrough(t, g, ids["carol@partner.test"])
	})
	t.Run("forged sender gets no PDF password", func(t *testing.T) { forgedSenderGetsNoPassword(t, g) })
	t.Run("display name showing another address is refused", func(t *testing.T) {
		for _, tc := range displayNameSpoofs(alice) {
			t.Run(tc.name, func(t *testing.T) {
				rcpt := "spoof-" + tc.slug + "@other.test"
				r := submit(t, g.addr, submission{From: alice, To: []string{rcpt},
					Data: rfc5322(fields(tc.from, rcpt, "[secure] board memo [pw:Spoof-Pass-2026]"), "spoofed body")})
				if !r.is(550, "5.7.1") {
					t.Fatalf("From: %s answered %v, want 550 5.7.1 at the end of DATA", tc.from, r)
				}
			})
		}
	})
	t.Run("alias signs with the user's certificate", func(t *testing.T) { aliasSigns(t, g) })
	t.Run("unreadable or ambiguous header is refused", func(t *testing.T) { unreadableHeaderRefused(t, g) })
	t.Run("subject password never in clear", func(t *testing.T) { subjectPasswordNeverInClear(t, g, ids) })
	t.Run("Bcc recipients get their own envelope", func(t *testing.T) { bccOwnEnvelope(t, g, ids) })
	t.Run("certificate found whatever the local part's case", func(t *testing.T) {
		const rcpt = "john.doe@partner.test"
		const marker = "marker-case-insensitive-lookup"
		if r := submit(t, g.addr, submission{From: alice, To: []string{rcpt}, Data: rfc5322(fields(alice, rcpt, "report"), marker)}); r.Code != 250 {
			t.Fatalf("submission: %v", r)
		}
		f := g.waitDelivered(t, rcpt)
		if leaf(f.Msg, "application/pkcs7-mime") == nil {
			t.Fatalf("not S/MIME although John.Doe@partner.test's certificate was imported:\n%s", clip(f.Msg))
		}
		if r := cmsDecrypt(t, f.Msg, ids["John.Doe@partner.test"]); r.ExitCode != 0 || !bytes.Contains(r.Stdout, []byte(marker)) {
			t.Fatalf("openssl cms -decrypt: exit %d\n%s", r.ExitCode, r.Stderr)
		}
		g.assertNoLeak(t, marker)
	})
	t.Run("unreachable issuer (AIA) defers an opportunistic recipient", func(t *testing.T) {
		assertDeferredNotPlain(t, g, "nobody@aia.test", "marker-aia-unreachable")
	})
}

// labelIsNotProof: content types that only claim encryption, over plain
// or non-enveloped content, under the [secure] rule to recipients without
// a certificate. Each must leave as PDF mail, never with the body readable.
func labelIsNotProof(t *testing.T, g *gw, signer *testpeer.Identity) {
	const enveloped = `application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"`
	b64 := func(b []byte) string { return wrap76(base64.StdEncoding.EncodeToString(b)) }
	signedData := func(marker string) string {
		in := testpeer.WriteFile(t, t.TempDir(), "content.txt", []byte("Content-Type: text/plain\r\n\r\n"+marker+"\r\n"))
		return b64(testpeer.MustRun(t, nil, "openssl", "cms", "-sign", "-nodetach", "-binary", "-outform", "DER",
			"-in", in, "-signer", signer.CertFile, "-inkey", signer.KeyFile))
	}
	zeroRecipients := func(marker string) string {
		der := envelopedWithoutRecipients(t, []byte(marker))
		// The attack is well-formed CMS: openssl reads it.
		f := testpeer.WriteFile(t, t.TempDir(), "zero.der", der)
		testpeer.MustRun(t, nil, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", f)
		return b64(der)
	}
	cases := []struct {
		name, contentType, cte string
		body                   func(marker string) string
	}{
		{"plain text labelled enveloped-data", enveloped, "", func(m string) string { return m }},
		{"base64 of non-CMS labelled enveloped-data", enveloped, "base64", func(m string) string { return b64([]byte("just text: " + m)) }},
		{"SignedData relabelled enveloped-data", enveloped, "base64", signedData},
		{"enveloped-data with zero recipients", enveloped, "base64", zeroRecipients},
		{"x-pkcs7-mime label", `application/x-pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"`, "", func(m string) string { return m }},
		{"authEnveloped-data label", `application/pkcs7-mime; smime-type=authEnveloped-data; name="smime.p7m"`, "", func(m string) string { return m }},
		{"no smime-type, p7m name", `application/pkcs7-mime; name="smime.p7m"`, "", func(m string) string { return m }},
		{"multipart/encrypted over plain parts", `multipart/encrypted; protocol="application/pkcs7-mime"; boundary="enc1"`, "", func(m string) string {
			return "--enc1\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n" + m + "\r\n--enc1--\r\n"
		}},
		{"nested multipart around a labelled plain part", `multipart/mixed; boundary="out1"`, "", func(m string) string {
			return "--out1\r\nContent-Type: multipart/alternative; boundary=\"in1\"\r\n\r\n--in1\r\n" +
				"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n" + m + "\r\n--in1--\r\n--out1--\r\n"
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			marker := fmt.Sprintf("marker-label-%d-plain-body", i)
			password := fmt.Sprintf("Label-Pass-%d-2026", i)
			rcpt := fmt.Sprintf("label-%d@other.test", i)
			hdr := fields(alice, rcpt, "[secure] statement [pw:"+password+"]", "MIME-Version: 1.0", "Content-Type: "+tc.contentType)
			if tc.cte != "" {
				hdr = append(hdr, "Content-Transfer-Encoding: "+tc.cte)
			}
			if r := submit(t, g.addr, submission{From: alice, To: []string{rcpt}, Data: rfc5322(hdr, tc.body(marker))}); r.Code != 250 {
				t.Fatalf("submission: %v", r)
			}
			f := g.waitDelivered(t, rcpt)
			g.assertNoLeak(t, marker)
			assertPDFCarrier(t, f.Msg, password, "")
		})
	}
}

// envelopedWithoutRecipients is a CMS EnvelopedData with an empty
// recipientInfos SET, whose "encrypted" content is content itself.
func envelopedWithoutRecipients(t *testing.T, content []byte) []byte {
	t.Helper()
	type algorithm struct {
		Algorithm asn1.ObjectIdentifier
		IV        []byte
	}
	type encryptedContentInfo struct {
		ContentType asn1.ObjectIdentifier
		Algorithm   algorithm
		Content     []byte `asn1:"tag:0,optional"`
	}
	type envelopedData struct {
		Version        int
		RecipientInfos []asn1.RawValue `asn1:"set"`
		Encrypted      encryptedContentInfo
	}
	type contentInfo struct {
		ContentType asn1.ObjectIdentifier
		Content     envelopedData `asn1:"explicit,tag:0"`
	}
	der, err := asn1.Marshal(contentInfo{
		ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3},
		Content: envelopedData{RecipientInfos: []asn1.RawValue{}, Encrypted: encryptedContentInfo{
			ContentType: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1},
			Algorithm:   algorithm{Algorithm: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, IV: make([]byte, 16)},
			Content:     content,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	return b.String() + s
}

// genuineEncryptedPassesThrough: mail the sender's client encrypted with
// openssl to the partner's certificate, under a rule that demands S/MIME,
// leaves byte for byte as it came and decrypts with the partner's key.
func genuineEncryptedPassesThrough(t *testing.T, g *gw, carol *testpeer.Identity) {
	const marker = "marker-genuinely-encrypted"
	entity := mustEncryptFor(t, []byte("Content-Type: text/plain\r\n\r\n"+marker+"\r\n"), carol.CertFile)
	sent := leaf(append([]byte(strings.Join(fields(alice, carol.Email, "x"), "\r\n")+"\r\n"), entity...), "application/pkcs7-mime")
	if sent == nil {
		t.Fatalf("openssl wrote no application/pkcs7-mime:\n%s", entity)
	}
	msg := append([]byte(strings.Join(fields(alice, carol.Email, "quarterly figures", "X-Classification: Confidential"), "\r\n")+"\r\n"), entity...)
	if r := submit(t, g.addr, submission{From: alice, To: []string{carol.Email}, Data: msg}); r.Code != 250 {
		t.Fatalf("submission: %v", r)
	}
	f := g.waitDelivered(t, carol.Email)
	got := leaf(f.Msg, "application/pkcs7-mime")
	if got == nil || !bytes.Equal(got.Decoded, sent.Decoded) {
		t.Fatalf("not relayed as it came:\n%s", clip(f.Msg))
	}
	if r := cmsDecrypt(t, f.Msg, carol); r.ExitCode != 0 || !bytes.Contains(r.Stdout, []byte(marker)) {
		t.Fatalf("openssl cms -decrypt: exit %d\n%s", r.ExitCode, r.Stderr)
	}
	g.assertNoLeak(t, marker)
}

// forgedSenderGetsNoPassword: with generated-to-sender, a stranger who
// puts his address in From must not receive the partner's PDF password;
// the real user gets it, and only once the PDF has left.
func forgedSenderGetsNoPassword(t *testing.T, g *gw) {
	const mallory = "mallory@evil.test"
	const partner = "fresh-partner@fresh.test"
	const marker = "marker-from-the-real-user"
	r := submit(t, g.addr, submission{From: mallory, To: []string{partner}, Data: rfc5322(fields(mallory, partner, "[secure] hi"), "forged body")})
	if r.Code == 250 {
		o := g.waitOutcome(t, partner)
		if o.Entry == nil || o.Entry.State != "held" {
			t.Fatalf("mail from %s to %s: %s, want held", mallory, partner, o)
		}
		// The admin deletes the forgery; what follows is the real user's.
		g.cli("queue", "delete", o.Entry.ID)
	} else if r.Code < 500 {
		t.Fatalf("submission from %s: %v, want 250 (then held) or a 5xx", mallory, r)
	}
	g.waitQueueDrained(t) // a notice, if one was made, has been tried
	if files := g.filesFor(mallory); len(files) > 0 {
		t.Fatalf("%d parcel(s) to the forged sender %s, first:\n%s", len(files), mallory, clip(files[0].Msg))
	}

	if r := submit(t, g.addr, submission{From: alice, To: []string{partner}, Data: rfc5322(fields(alice, partner, "[secure] from alice"), marker)}); r.Code != 250 {
		t.Fatalf("submission from %s: %v", alice, r)
	}
	pdf := g.waitDelivered(t, partner)
	notice := g.waitFile(t, "password notice to "+alice, func(f outboxFile) bool {
		return slices.Contains(f.Rcpts, alice) && strings.Contains(textOf(f.Msg), partner)
	})
	if len(notice.Rcpts) != 1 {
		t.Fatalf("password notice addressed to %v, want only %s", notice.Rcpts, alice)
	}
	if notice.Mod.Before(pdf.Mod) {
		t.Fatalf("password notice (%s) written before the PDF left (%s)", notice.Mod, pdf.Mod)
	}
	password := noticePassword(t, notice.Msg)
	assertPDFCarrier(t, pdf.Msg, password, marker)
	g.assertNoLeak(t, marker)
}

// waitFile polls the outbox until a parcel satisfies match.
func (g *gw) waitFile(t *testing.T, what string, match func(outboxFile) bool) outboxFile {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		for _, f := range g.outboxFiles() {
			if match(f) {
				return f
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 45s; log:\n%s", what, g.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// textOf is the decoded text/plain of msg.
func textOf(msg []byte) string {
	var b strings.Builder
	for _, l := range leavesOf(msg) {
		if l.Type == "text/plain" {
			b.Write(l.Decoded)
		}
	}
	return b.String()
}

// noticePassword reads the password from the notice template: the
// indented line after "password to open it:".
func noticePassword(t *testing.T, msg []byte) string {
	t.Helper()
	_, after, ok := strings.Cut(textOf(msg), "password to open it:")
	if !ok {
		t.Fatalf("no password in the notice:\n%s", clip(msg))
	}
	for _, line := range strings.Split(after, "\n") {
		if pw := strings.TrimSpace(line); pw != "" {
			return pw
		}
	}
	t.Fatalf("no password in the notice:\n%s", clip(msg))
	return ""
}

type spoof struct{ name, slug, from string }

// displayNameSpoofs are From fields whose address is addr but whose
// display name shows another address, as a mail client would render it.
func displayNameSpoofs(addr string) []spoof {
	return []spoof{
		{"quoted address", "quoted", `"ceo@example.org" <` + addr + `>`},
		// mime.BEncoding leaves ASCII as it is: build the word by hand.
		{"encoded word", "encoded", "=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte("ceo@example.org")) + "?= <" + addr + ">"},
		{"name and address", "angle", `"CEO <ceo@example.org>" <` + addr + `>`},
	}
}

// aliasSigns: mail from an alias of alice is signed with alice's
// certificate, which carries the alias, under sign = always and if-key.
func aliasSigns(t *testing.T, g *gw) {
	for _, rcpt := range []string{"alias@signed.test", "alias@ifkey.test"} {
		t.Run(rcpt, func(t *testing.T) {
			marker := "marker-alias-" + rcpt
			if r := submit(t, g.addr, submission{From: aliceAlias, To: []string{rcpt}, Data: rfc5322(fields(aliceAlias, rcpt, "from my alias"), marker)}); r.Code != 250 {
				t.Fatalf("submission: %v", r)
			}
			f := g.waitDelivered(t, rcpt)
			content, signer := cmsVerify(t, f.Msg, g.rootCA())
			if !bytes.Contains(content, []byte(marker)) {
				t.Fatalf("signed content lacks the body:\n%s", content)
			}
			if !slices.Contains(signer.EmailAddresses, aliceAlias) || !slices.Contains(signer.EmailAddresses, alice) {
				t.Fatalf("signer certificate names %v, want %s with its alias %s", signer.EmailAddresses, alice, aliceAlias)
			}
		})
	}
}

// unreadableHeaderRefused: a header the parser cannot read, or one with a
// field that RFC 5322 3.6 allows only once given twice, is refused at the
// end of DATA; it is never decided by the rule for everything else.
func unreadableHeaderRefused(t *testing.T, g *gw) {
	type refusal struct {
		name   string
		header []string // after From, To, Date unless the case replaces them
		code   int      // 0: any 5xx
		enh    string
	}
	base := func(rcpt string, omit string, extra ...string) []string {
		var out []string
		for _, f := range fields(alice, rcpt, "merger") {
			if name, _, _ := strings.Cut(f, ":"); !strings.EqualFold(name, omit) {
				out = append(out, f)
			}
		}
		return append(out, extra...)
	}
	var cases []refusal
	cases = append(cases, refusal{name: "line without colon next to a label",
		header: []string{"X-Classification: Confidential", "this line has no colon"}, code: 554, enh: "5.6.0"})
	once := map[string][2]string{
		"From": {alice, "Alice <alice@example.org>"}, "Sender": {alice, bob},
		"Reply-To": {alice, bob}, "To": {"x@other.test", "y@other.test"}, "Cc": {"x@other.test", "y@other.test"},
		"Bcc": {"x@other.test", "y@other.test"}, "Message-ID": {"<one@client.test>", "<two@client.test>"},
		"In-Reply-To": {"<one@client.test>", "<two@client.test>"}, "References": {"<one@client.test>", "<two@client.test>"},
		"Subject": {"merger", "[secure] merger"}, "Date": {"Mon, 02 Mar 2026 10:00:00 +0000", "Tue, 03 Mar 2026 10:00:00 +0000"},
		"MIME-Version": {"1.0", "1.0"}, "Content-Type": {"text/plain", "application/pkcs7-mime; smime-type=enveloped-data"},
		"Content-Transfer-Encoding": {"7bit", "base64"},
	}
	for _, name := range []string{"From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-ID", "In-Reply-To",
		"References", "Subject", "Date", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"} {
		v := once[name]
		cases = append(cases, refusal{name: name + " twice", header: []string{"omit:" + name, name + ": " + v[0], name + ": " + v[1]}, code: 554, enh: "5.6.0"})
	}
	huge := "X-Huge: " + strings.Repeat(strings.Repeat("a", 998)+"\r\n ", 900)
	many := make([]string, 0, 40000)
	for i := range 40000 {
		many = append(many, fmt.Sprintf("X-Filler-%05d: x", i))
	}
	cases = append(cases,
		refusal{name: "no From", header: []string{"omit:From"}, code: 554, enh: "5.6.0"},
		refusal{name: "two From addresses without Sender", header: []string{"omit:From", "From: alice@example.org, bob@example.org"}, code: 554, enh: "5.6.0"},
		refusal{name: "NUL in a field", header: []string{"X-Test: a\x00b"}, code: 554, enh: "5.6.0"},
		refusal{name: "bare CR in a field", header: []string{"X-Test: a\rb"}, code: 554, enh: "5.6.0"},
		refusal{name: "one 900 KB field", header: []string{huge + "end"}},
		refusal{name: "40000 fields", header: many},
	)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rcpt := fmt.Sprintf("parse-%d@other.test", i)
			omit, extra := "", tc.header
			if o, ok := strings.CutPrefix(extra[0], "omit:"); ok {
				omit, extra = o, extra[1:]
			}
			marker := fmt.Sprintf("marker-unreadable-header-%d", i)
			r := submit(t, g.addr, submission{From: alice, To: []string{rcpt}, Data: rfc5322(base(rcpt, omit, extra...), marker)})
			switch {
			case tc.code == 0 && (r.Code < 500 || r.Code > 599):
				t.Fatalf("answered %v, want a 5xx", r)
			case tc.code != 0 && !r.is(tc.code, tc.enh):
				t.Fatalf("answered %v, want %d %s at the end of DATA", r, tc.code, tc.enh)
			}
			// Refused in the session, so nothing was queued that could
			// still arrive; the gateway lives on for the next sender.
			if files := g.filesFor(rcpt); len(files) > 0 {
				t.Fatalf("refused message in the outbox:\n%s", clip(files[0].Msg))
			}
			if g.cmd.ProcessState != nil {
				t.Fatalf("serve exited: %v\n%s", g.cmd.ProcessState, g.logText())
			}
			testpeer.WaitPort(t, g.addr, 5*time.Second)
		})
	}
}

// subjectPasswordNeverInClear: the PDF password from the subject, copied
// by Exchange into Thread-Topic, plain and as encoded words, is in no
// header or readable body of any copy that leaves (S/MIME, PDF carrier,
// signed-only); the policy tag is gone from Subject and Thread-Topic.
func subjectPasswordNeverInClear(t *testing.T, g *gw, ids map[string]*testpeer.Identity) {
	const password = "Very-Secret-Pw-42"
	plain := "[secure] offer [pw:" + password + "]"
	encoded := mime.BEncoding.Encode("utf-8", "[secure] Angebot für Sie [pw:"+password+"]")
	for _, tc := range []struct{ name, subject, smime, suffix string }{
		{"plain subject", plain, "pw-smime@partner.test", ""},
		{"encoded words", encoded, "pw-smime-ew@partner.test", "-ew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pdf, signed := "pw-pdf"+tc.suffix+"@other.test", "pw-signed"+tc.suffix+"@signed.test"
			internal := "intern" + tc.suffix + "@example.org"
			rcpts := []string{tc.smime, pdf, signed, internal}
			marker := "marker-subject-password" + tc.suffix
			msg := rfc5322(fields(alice, strings.Join(rcpts, ", "), tc.subject, "Thread-Topic: "+tc.subject), marker)
			if r := submit(t, g.addr, submission{From: alice, To: rcpts, Data: msg}); r.Code != 250 {
				t.Fatalf("submission: %v", r)
			}
			smimeCopy, pdfCopy, signedCopy := g.waitDelivered(t, tc.smime), g.waitDelivered(t, pdf), g.waitDelivered(t, signed)
			g.waitDelivered(t, internal) // the original: excluded below
			for _, f := range []outboxFile{smimeCopy, pdfCopy, signedCopy} {
				for _, secret := range []string{password, encoded, mime.QEncoding.Encode("utf-8", "[pw:"+password+"]")} {
					if leaks(f.Msg, secret) {
						t.Errorf("%q readable in the copy to %v:\n%s", secret, f.Rcpts, clip(f.Msg))
					}
				}
				for _, field := range decodedHeader(f.Msg) {
					if strings.Contains(field, password) {
						t.Errorf("copy to %v: header field %q carries the password", f.Rcpts, field)
					}
					name, _, _ := strings.Cut(field, ":")
					if (strings.EqualFold(name, "Subject") || strings.EqualFold(name, "Thread-Topic")) && strings.Contains(field, "[secure]") {
						t.Errorf("copy to %v: policy tag left in %q", f.Rcpts, field)
					}
				}
			}
			if r := cmsDecrypt(t, smimeCopy.Msg, ids[tc.smime]); r.ExitCode != 0 || !bytes.Contains(r.Stdout, []byte(marker)) {
				t.Errorf("S/MIME copy: openssl cms -decrypt exit %d\n%s", r.ExitCode, r.Stderr)
			}
			assertPDFCarrier(t, pdfCopy.Msg, password, marker)
			g.assertNoLeak(t, password, "intern@example.org", "intern-ew@example.org")
		})
	}
}

// bccOwnEnvelope: a Bcc recipient's envelope carries no RecipientInfo for
// the others and theirs none for it, so that no recipient can learn who
// else got the message.
func bccOwnEnvelope(t *testing.T, g *gw, ids map[string]*testpeer.Identity) {
	a, b, c := ids["bcc-a@partner.test"], ids["bcc-b@partner.test"], ids["bcc-c@partner.test"]
	const marker = "marker-bcc"
	msg := rfc5322(fields(alice, a.Email, "board list", "Cc: "+c.Email), marker)
	if r := submit(t, g.addr, submission{From: alice, To: []string{a.Email, b.Email, c.Email}, Data: msg}); r.Code != 250 {
		t.Fatalf("submission: %v", r)
	}
	copies := map[string]outboxFile{}
	for _, id := range []*testpeer.Identity{a, b, c} {
		copies[id.Email] = g.waitDelivered(t, id.Email)
	}
	if rc := copies[b.Email].Rcpts; len(rc) != 1 {
		t.Errorf("the Bcc recipient shares its envelope with %v", rc)
	}
	for _, tc := range []struct {
		copyOf string
		key    *testpeer.Identity
		opens  bool
	}{
		{a.Email, a, true}, {b.Email, b, true}, {c.Email, c, true},
		{a.Email, b, false}, {c.Email, b, false}, {b.Email, a, false}, {b.Email, c, false},
	} {
		r := cmsDecrypt(t, copies[tc.copyOf].Msg, tc.key)
		opened := r.ExitCode == 0 && bytes.Contains(r.Stdout, []byte(marker))
		if opened != tc.opens {
			t.Errorf("%s's copy opened by %s's key: %v, want %v (%s)", tc.copyOf, tc.key.Email, opened, tc.opens, r.Stderr)
		}
	}
	// Without any key: the recipients listed in the CMS structure.
	for _, id := range []*testpeer.Identity{a, c} {
		f := testpeer.WriteFile(t, t.TempDir(), "enc.eml", copies[id.Email].Msg)
		printed := testpeer.MustRun(t, nil, "openssl", "cms", "-cmsout", "-print", "-in", f)
		if bytes.Contains(printed, []byte(fmt.Sprintf("serialNumber: %d", b.Cert.SerialNumber))) {
			t.Errorf("%s's envelope names the Bcc recipient's certificate (serial %d)", id.Email, b.Cert.SerialNumber)
		}
	}
	g.assertNoLeak(t, marker)
}

// assertDeferredNotPlain: a recipient whose certificate exists but cannot
// be judged now waits in the queue; no signed plain copy leaves.
func assertDeferredNotPlain(t *testing.T, g *gw, rcpt, marker string) {
	t.Helper()
	if r := submit(t, g.addr, submission{From: alice, To: []string{rcpt}, Data: rfc5322(fields(alice, rcpt, "contract"), marker)}); r.Code != 250 {
		t.Fatalf("submission: %v", r)
	}
	o := g.waitOutcome(t, rcpt)
	if o.Entry == nil || o.Entry.State != "deferred" {
		for _, f := range o.Files {
			t.Logf("delivered to %v:\n%s", f.Rcpts, clip(f.Msg))
		}
		t.Fatalf("%s: %s, want deferred", rcpt, o)
	}
	g.assertNoLeak(t, marker)
}

// TestAdversarialRevocationUnknown: under trust.revocation = "hard-fail" a
// certificate whose OCSP responder cannot be reached is not "no
// certificate": the opportunistic recipient is deferred, not sent a
// signed plain copy.
func TestAdversarialRevocationUnknown(t *testing.T) {
	t.Parallel()
	testpeer.Require(t, "openssl")
	unreachable := newUnreachablePKI(t)
	leafFile := unreachable.ocspUnreachable(t, "ocsp@revoc.test")
	rules := "[[policy.rules]]\nname = \"opportunistic\"\nsign = \"always\"\nencrypt = \"smime\"\n"
	g := newGatewayRules(t, rules, fmt.Sprintf("\n[trust]\nca_files = [%q]\nsystem_roots = false\nrevocation = \"hard-fail\"\n", unreachable.RootFile))
	g.cli("directory", "import", leafFile)
	g.start()
	assertDeferredNotPlain(t, g, "ocsp@revoc.test", "marker-ocsp-unreachable")
}

// TestAdversarialSenderAuthorization: with smtp.auth_users_file, a
// personal account may send only as its own address and aliases, a relay
// account as any user; a display name showing another address is refused
// for every account kind.
func TestAdversarialSenderAuthorization(t *testing.T) {
	t.Parallel()
	testpeer.Require(t, "openssl")
	const secret = "Correct-Horse-Battery-9"
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	const relay = "exchange-connector"
	users := fmt.Sprintf("# name:bcrypt-hash[:role]\n%s:%s\n%s:%s:relay\n%s:%s:personal\n", alice, hash, relay, hash, bob, hash)
	usersFile := testpeer.WriteFile(t, t.TempDir(), "smtp-users", []byte(users))
	rules := "[[policy.rules]]\nname = \"signed-only\"\nrecipient_domain = [\"signed.test\"]\nsign = \"always\"\nencrypt = \"none\"\n\n" +
		"[[policy.rules]]\nname = \"default\"\nsign = \"always\"\nencrypt = \"smime-or-pdf\"\non_failure = \"hold\"\n"
	g := newGatewayRules(t, rules, "")
	g.withAliceAlias()
	g.editConfig(`allowed_networks = ["127.0.0.0/8"]`, fmt.Sprintf("allowed_networks = [\"127.0.0.0/8\"]\nauth_users_file = %q", usersFile))
	g.start()

	type attempt struct {
		name, user, mailFrom string
		header               []string // From and Sender fields
		signer               string   // "" = must be refused with 550 5.7.1
	}
	cases := []attempt{
		{"personal account, envelope sender of another user", alice, bob, []string{"From: " + bob}, ""},
		{"personal account, header From of another user", alice, alice, []string{"From: " + bob}, ""},
		{"personal account, Sender of another user", alice, alice, []string{"From: " + alice, "Sender: " + bob}, ""},
		{"explicit personal account as another user", bob, alice, []string{"From: " + alice}, ""},
		{"personal account as itself", alice, alice, []string{"From: " + alice}, alice},
		{"personal account as its alias", alice, aliceAlias, []string{"From: " + aliceAlias}, alice},
		{"relay account as alice", relay, alice, []string{"From: " + alice}, alice},
		{"relay account as bob", relay, bob, []string{"From: " + bob}, bob},
	}
	for _, account := range []string{relay, alice} {
		for _, s := range displayNameSpoofs(alice) {
			cases = append(cases, attempt{fmt.Sprintf("%s, display name spoof (%s)", account, s.name), account, alice, []string{"From: " + s.from}, ""})
		}
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rcpt := fmt.Sprintf("auth-%d@signed.test", i)
			marker := fmt.Sprintf("marker-auth-%d", i)
			hdr := append(tc.header, "To: "+rcpt, "Subject: authorization", "Date: Mon, 02 Mar 2026 10:00:00 +0000",
				"Message-ID: <"+randomToken()+"@client.test>")
			r := submit(t, g.addr, submission{From: tc.mailFrom, To: []string{rcpt}, User: tc.user, Password: secret, Data: rfc5322(hdr, marker)})
			if tc.signer == "" {
				if !r.is(550, "5.7.1") {
					t.Fatalf("answered %v, want 550 5.7.1", r)
				}
				if files := g.filesFor(rcpt); len(files) > 0 {
					t.Fatalf("refused message in the outbox:\n%s", clip(files[0].Msg))
				}
				return
			}
			if r.Code != 250 {
				t.Fatalf("answered %v, want 250", r)
			}
			f := g.waitDelivered(t, rcpt)
			_, signer := cmsVerify(t, f.Msg, g.rootCA())
			if !slices.Contains(signer.EmailAddresses, tc.signer) {
				t.Fatalf("signed with a certificate for %v, want %s", signer.EmailAddresses, tc.signer)
			}
		})
	}
	t.Run("no AUTH over plain text", func(t *testing.T) {
		r := submit(t, g.addr, submission{NoTLS: true, From: alice, To: []string{"auth-plain@signed.test"}, User: alice, Password: secret,
			Data: rfc5322(fields(alice, "auth-plain@signed.test", "plain"), "x")})
		if r.Stage != "auth" || r.Code == 235 {
			t.Fatalf("AUTH without STARTTLS answered %v, want it refused", r)
		}
	})
	t.Run("no MAIL without AUTH", func(t *testing.T) {
		r := submit(t, g.addr, submission{From: alice, To: []string{"auth-none@signed.test"}, Data: rfc5322(fields(alice, "auth-none@signed.test", "none"), "x")})
		if r.Stage != "mail" || !r.is(530, "5.7.0") {
			t.Fatalf("MAIL without AUTH answered %v, want 530 5.7.0", r)
		}
	})
}
