package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/policy"
	"github.com/sealgate/sealgate/pkg/smime"
)

type fakeDecider map[string]Decision // by recipient; "*" default

func (f fakeDecider) Decide(_ context.Context, _ *MessageFacts, rcpt string, hasCert bool) Decision {
	d, ok := f[rcpt]
	if !ok {
		d = f["*"]
	}
	if d.Method == MethodSMIME && !hasCert && d.Fallback == MethodPDF {
		d.Method = MethodPDF
	}
	return d
}

type fakeFinder struct {
	certs map[string]string
	err   error
}

func (f fakeFinder) Find(_ context.Context, email string) (any, bool, error) {
	if f.err != nil {
		return nil, false, f.err
	}
	c, ok := f.certs[email]
	if !ok {
		return nil, false, nil
	}
	return c, true, nil
}

// fakeSigner signs only for alice@org.test, like pki does for known users.
type fakeSigner struct{ calls int }

func (s *fakeSigner) Sign(_ context.Context, sender string, msg []byte) ([]byte, error) {
	s.calls++
	if sender != "alice@org.test" {
		return nil, ErrNoSenderKey
	}
	return append([]byte("X-Signed-By: "+sender+"\r\n"), msg...), nil
}

type fakeEncrypter struct{ err error }

func (e fakeEncrypter) Encrypt(_ context.Context, msg []byte, certs []any) ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	var names []string
	for _, c := range certs {
		names = append(names, c.(string))
	}
	return []byte("X-Encrypted-For: " + strings.Join(names, ",") + "\r\n\r\nCIPHERTEXT"), nil
}

type fakePDF struct{ err error }

func (p fakePDF) SealPDF(_ context.Context, _, rcpt, _ string, _ []byte) (PDFResult, error) {
	if p.err != nil {
		return PDFResult{}, p.err
	}
	return PDFResult{Carrier: []byte("Subject: pdf for " + rcpt + "\r\n\r\nPDF")}, nil
}

func TestPipeline(t *testing.T) {
	must := Decision{Rule: "default", Action: ActionDeliver, Method: MethodSMIME, Fallback: MethodPDF, MustEncrypt: true}
	required := Decision{Rule: "confidential", Action: ActionDeliver, Method: MethodSMIME, MustEncrypt: true}
	internal := Decision{Rule: "internal", Action: ActionPass}
	msg := func(from string) []byte {
		return []byte("From: " + from + "\r\nTo: c1@ext.test, c2@ext.test\r\nSubject: s\r\n\r\nSECRET\r\n")
	}
	certs := map[string]string{"c1@ext.test": "C1", "c2@ext.test": "C2"}
	tests := []struct {
		name      string
		from      string
		rcpts     []string
		decider   fakeDecider
		finder    fakeFinder
		enc       fakeEncrypter
		pdf       PDFSealer
		wantParts []string // "method:rcpt,rcpt"
		wantHeld  []string
		wantPlain bool // some parcel carries SECRET readable (only allowed for pass/signed)
	}{
		{name: "one envelope for all cert recipients, a PDF each for the others",
			from: "alice@org.test", rcpts: []string{"c1@ext.test", "c2@ext.test", "p1@ext.test", "p2@ext.test"},
			decider: fakeDecider{"*": must}, finder: fakeFinder{certs: certs}, pdf: fakePDF{},
			wantParts: []string{"smime:c1@ext.test,c2@ext.test", "pdf:p1@ext.test", "pdf:p2@ext.test"}},
		{name: "internal passes untouched", from: "alice@org.test", rcpts: []string{"bob@org.test"},
			decider: fakeDecider{"*": internal}, finder: fakeFinder{}, wantParts: []string{"passthrough:bob@org.test"}, wantPlain: true},
		{name: "directory down on must-encrypt holds", from: "alice@org.test", rcpts: []string{"c1@ext.test"},
			decider: fakeDecider{"*": must}, finder: fakeFinder{err: errors.New("ldap timeout")}, pdf: fakePDF{},
			wantHeld: []string{"c1@ext.test"}},
		{name: "PDF failure holds", from: "alice@org.test", rcpts: []string{"p1@ext.test"},
			decider: fakeDecider{"*": must}, finder: fakeFinder{}, pdf: fakePDF{err: errors.New("font missing")},
			wantHeld: []string{"p1@ext.test"}},
		{name: "no PDF sealer holds", from: "alice@org.test", rcpts: []string{"p1@ext.test"},
			decider: fakeDecider{"*": must}, finder: fakeFinder{}, wantHeld: []string{"p1@ext.test"}},
		{name: "smime-required without certificate holds", from: "alice@org.test", rcpts: []string{"p1@ext.test"},
			decider: fakeDecider{"*": required}, finder: fakeFinder{}, wantHeld: []string{"p1@ext.test"}},
		{name: "encryption failure falls back to PDF", from: "alice@org.test", rcpts: []string{"c1@ext.test"},
			decider: fakeDecider{"*": must}, finder: fakeFinder{certs: certs}, enc: fakeEncrypter{err: errors.New("bad key")}, pdf: fakePDF{},
			wantParts: []string{"pdf:c1@ext.test"}},
		{name: "encryption failure without fallback holds", from: "alice@org.test", rcpts: []string{"c1@ext.test"},
			decider: fakeDecider{"*": required}, finder: fakeFinder{certs: certs}, enc: fakeEncrypter{err: errors.New("bad key")},
			wantHeld: []string{"c1@ext.test"}},
		{name: "forged From: no signing oracle, sign=always holds", from: "mallory@evil.test", rcpts: []string{"c1@ext.test"},
			decider: fakeDecider{"*": must}, finder: fakeFinder{certs: certs}, wantHeld: []string{"c1@ext.test"}},
		{name: "forged From with sign=if-key encrypts unsigned", from: "mallory@evil.test", rcpts: []string{"c1@ext.test"},
			decider: fakeDecider{"*": {Rule: "r", Action: ActionDeliver, Sign: SignIfKey, Method: MethodSMIME, MustEncrypt: true}},
			finder:  fakeFinder{certs: certs}, wantParts: []string{"smime:c1@ext.test"}},
		{name: "policy hold", from: "alice@org.test", rcpts: []string{"x@ext.test"},
			decider: fakeDecider{"*": {Rule: "stop", Action: ActionHold}}, finder: fakeFinder{}, wantHeld: []string{"x@ext.test"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pipeline{Hostname: "gw.test", Decider: tc.decider, Finder: tc.finder, Signer: &fakeSigner{}, Encrypter: tc.enc, PDF: tc.pdf}
			plan, err := p.Process(context.Background(), &Envelope{}, tc.rcpts, msg(tc.from))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			plain := false
			for _, pc := range plan.Parcels {
				got = append(got, pc.Method+":"+strings.Join(pc.Rcpts, ","))
				if bytes.Contains(pc.Data, []byte("SECRET")) {
					plain = true
				}
				if !bytes.HasPrefix(pc.Data, []byte(LoopHeader+": gw.test\r\n")) {
					t.Error("parcel lacks the loop guard field")
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.wantParts, " ") {
				t.Errorf("parcels %v, want %v", got, tc.wantParts)
			}
			if plain != tc.wantPlain {
				t.Errorf("readable body in output: %v, want %v", plain, tc.wantPlain)
			}
			var held []string
			for r := range plan.Held {
				held = append(held, r)
			}
			if strings.Join(held, ",") != strings.Join(tc.wantHeld, ",") {
				t.Errorf("held %v, want %v", plan.Held, tc.wantHeld)
			}
		})
	}
}

// realEnvelope is msg enveloped by smime.Encrypt for a throwaway
// certificate: what a sender's own client would have made.
func realEnvelope(t *testing.T, msg []byte) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "x"}, EmailAddresses: []string{"x@ext.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageKeyAgreement}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	out, err := smime.Encrypt(msg, []smime.Recipient{{Cert: cert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("From: alice@org.test\r\nTo: x@ext.test\r\n"), out...)
}

// Already encrypted is proven from the body, not read from the label
// (issue #12 item 1): a real envelope passes through, also under a rule
// that demands S/MIME; a label over plain text is plain and gets its rule.
func TestPipelinePassesEncryptedThrough(t *testing.T) {
	required := fakeDecider{"*": {Rule: "confidential", Action: ActionDeliver, Method: MethodSMIME, MustEncrypt: true}}
	real := realEnvelope(t, []byte("Content-Type: text/plain\r\n\r\nSECRET\r\n"))
	s := &fakeSigner{}
	p := &Pipeline{Hostname: "gw.test", Decider: required, Finder: fakeFinder{}, Signer: s, Encrypter: fakeEncrypter{err: errors.New("must not be called")}}
	plan, err := p.Process(context.Background(), &Envelope{}, []string{"x@ext.test"}, real)
	if err != nil || len(plan.Parcels) != 1 || plan.Parcels[0].Method != "passthrough" || s.calls != 0 || len(plan.Held) != 0 {
		t.Fatalf("real envelope: plan %+v, err %v, sign calls %d", plan, err, s.calls)
	}

	fake := []byte("From: alice@org.test\r\nTo: x@ext.test\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n\r\nSECRET\r\n")
	must := fakeDecider{"*": {Rule: "secure", Action: ActionDeliver, Method: MethodSMIME, Fallback: MethodPDF, MustEncrypt: true}}
	for _, tc := range []struct {
		name    string
		decider fakeDecider
		want    string
	}{
		{"smime-required holds", required, ""},
		{"smime-or-pdf seals a PDF", must, "pdf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pipeline{Hostname: "gw.test", Decider: tc.decider, Finder: fakeFinder{}, Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}, PDF: fakePDF{}}
			plan, err := p.Process(context.Background(), &Envelope{}, []string{"x@ext.test"}, fake)
			if err != nil {
				t.Fatal(err)
			}
			for _, pc := range plan.Parcels {
				if bytes.Contains(pc.Data, []byte("SECRET")) || pc.Method != tc.want {
					t.Fatalf("a labelled plain message left as %s:\n%s", pc.Method, pc.Data)
				}
			}
			if tc.want == "" && plan.Held["x@ext.test"] == "" {
				t.Fatalf("want held, got %+v", plan)
			}
			if tc.want != "" && len(plan.Parcels) != 1 {
				t.Fatalf("want one %s parcel, got %+v", tc.want, plan)
			}
		})
	}
}

func TestPipelineCarriesTLSRequirement(t *testing.T) {
	p := &Pipeline{Hostname: "gw.test", Finder: fakeFinder{certs: map[string]string{"c1@ext.test": "C1", "c2@ext.test": "C2"}},
		Decider: fakeDecider{
			"c1@ext.test": {Rule: "conf", Action: ActionDeliver, Method: MethodSMIME, MustEncrypt: true, RequireTLS: true},
			"*":           {Rule: "default", Action: ActionDeliver, Method: MethodSMIME, MustEncrypt: true},
		}, Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}}
	plan, err := p.Process(context.Background(), &Envelope{}, []string{"c1@ext.test", "c2@ext.test"}, []byte("From: alice@org.test\r\nCc: c1@ext.test, c2@ext.test\r\n\r\nx\r\n"))
	if err != nil || len(plan.Parcels) != 1 || !plan.Parcels[0].RequireTLS {
		t.Fatalf("the shared envelope must demand TLS when one recipient's policy does: %+v %v", plan, err)
	}
}

// A copy shared by recipients of several rules carries the strictest
// rule's TLS mode, and a lone recipient's "none" stays none.
func TestPipelineCarriesTLSMode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c1, c2 policy.TLSMode
		want   policy.TLSMode
	}{
		{"dane beats verified", policy.TLSVerified, policy.TLSDANE, policy.TLSDANE},
		{"verified beats opportunistic", policy.TLSOpportunistic, policy.TLSVerified, policy.TLSVerified},
		{"required beats none", policy.TLSRequired, policy.TLSNone, policy.TLSRequired},
		{"none stays none", policy.TLSNone, policy.TLSNone, policy.TLSNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pipeline{Hostname: "gw.test", Finder: fakeFinder{certs: map[string]string{"c1@ext.test": "C1", "c2@ext.test": "C2"}},
				Decider: fakeDecider{
					"c1@ext.test": {Rule: "a", Action: ActionDeliver, Method: MethodSMIME, MustEncrypt: true, TLS: tc.c1},
					"*":           {Rule: "b", Action: ActionDeliver, Method: MethodSMIME, MustEncrypt: true, TLS: tc.c2},
				}, Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}}
			plan, err := p.Process(context.Background(), &Envelope{}, []string{"c1@ext.test", "c2@ext.test"}, []byte("From: alice@org.test\r\nCc: c1@ext.test, c2@ext.test\r\n\r\nx\r\n"))
			if err != nil || len(plan.Parcels) != 1 || plan.Parcels[0].TLS != tc.want {
				t.Fatalf("plan %+v %v, want one parcel with tls %s", plan, err, tc.want)
			}
		})
	}
}

// A decision that demands encryption but names no method (a decider bug,
// or a future exemption wired wrongly) holds, never sends plain.
func TestPipelineMustEncryptWithoutMethodHolds(t *testing.T) {
	d := Decision{Rule: "confidential", Action: ActionDeliver, Method: MethodNone, MustEncrypt: true}
	p := &Pipeline{Hostname: "gw.test", Decider: fakeDecider{"*": d}, Finder: fakeFinder{}, Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}, PDF: fakePDF{}}
	plan, err := p.Process(context.Background(), &Envelope{From: "alice@org.test"}, []string{"x@ext.test"},
		[]byte("From: alice@org.test\r\nSubject: s\r\n\r\nSECRET\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Parcels) != 0 || !strings.Contains(plan.Held["x@ext.test"], "demands encryption") {
		t.Fatalf("want held, got parcels %d held %v", len(plan.Parcels), plan.Held)
	}
}

// opportunisticDecider is pkg/policy's encrypt = "smime": S/MIME with a
// certificate, signed-only without.
type opportunisticDecider struct{}

func (opportunisticDecider) Decide(_ context.Context, _ *MessageFacts, _ string, hasCert bool) Decision {
	d := Decision{Rule: "opportunistic", Action: ActionDeliver}
	if hasCert {
		d.Method = MethodSMIME
	}
	return d
}

// An opportunistic rule and a failed certificate lookup: the recipient
// waits for the directory instead of getting a copy that, with the
// directory up, would have been encrypted. A rule that never encrypts
// is not held up by the outage.
func TestPipelineOpportunisticWaitsForDirectory(t *testing.T) {
	msg := []byte("From: alice@org.test\r\nSubject: s\r\n\r\nSECRET\r\n")
	down := fakeFinder{err: errors.New("keyserver partners: connection refused")}
	p := &Pipeline{Hostname: "gw.test", Decider: opportunisticDecider{}, Finder: down, Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}}
	plan, err := p.Process(context.Background(), &Envelope{From: "alice@org.test"}, []string{"x@ext.test"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Parcels) != 0 || !strings.Contains(plan.Deferred["x@ext.test"], "connection refused") {
		t.Fatalf("want deferred, got parcels %d deferred %v held %v", len(plan.Parcels), plan.Deferred, plan.Held)
	}
	p.Decider = fakeDecider{"*": {Rule: "sign-only", Action: ActionDeliver, Method: MethodNone}}
	plan, err = p.Process(context.Background(), &Envelope{From: "alice@org.test"}, []string{"x@ext.test"}, msg)
	if err != nil || len(plan.Parcels) != 1 || plan.Parcels[0].Method != "signed" {
		t.Fatalf("sign-only rule: %+v %v", plan, err)
	}
}

// A recipient the header does not name (Bcc) gets an envelope of its own,
// so that no recipient info in a shared envelope shows who else got the
// message (issue #12 item 8); the named ones share one.
func TestPipelineBccGetsOwnEnvelope(t *testing.T) {
	certs := map[string]string{"c1@ext.test": "C1", "c2@ext.test": "C2", "b1@ext.test": "B1", "b2@ext.test": "B2"}
	must := Decision{Rule: "default", Action: ActionDeliver, Method: MethodSMIME, Fallback: MethodPDF, MustEncrypt: true}
	for _, tc := range []struct {
		name, to string
		want     []string
	}{
		{"named share, bcc alone", "To: C1@ext.test\r\nCc: c2@ext.test\r\n",
			[]string{"C1,C2", "B1", "B2"}},
		{"unparseable To: everyone alone", "To: c1@ext.test, <<\r\n",
			[]string{"C1", "B1", "C2", "B2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pipeline{Hostname: "gw.test", Decider: fakeDecider{"*": must}, Finder: fakeFinder{certs: certs}, Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}}
			msg := []byte("From: alice@org.test\r\n" + tc.to + "Subject: s\r\n\r\nSECRET\r\n")
			plan, err := p.Process(context.Background(), &Envelope{}, []string{"c1@ext.test", "b1@ext.test", "c2@ext.test", "b2@ext.test"}, msg)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, pc := range plan.Parcels {
				_, after, _ := bytes.Cut(pc.Data, []byte("X-Encrypted-For: "))
				got = append(got, string(bytes.SplitN(after, []byte("\r\n"), 2)[0]))
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("envelopes %v, want %v", got, tc.want)
			}
		})
	}
}

// A personal account's message whose author is someone else is refused at
// DATA; should it still reach the pipeline (its spool file outlived the
// refusal and Recover queued it), it is held, never signed as that author.
func TestPipelineChecksTheAccountAgain(t *testing.T) {
	owns := OwnsAddress(func(_ context.Context, addr string) (string, bool, error) { return addr, true, nil })
	signer := &fakeSigner{}
	p := &Pipeline{Hostname: "gw.test", Decider: fakeDecider{"*": {Rule: "default", Action: ActionDeliver, Method: MethodNone}},
		Finder: fakeFinder{}, Signer: signer, Encrypter: fakeEncrypter{}, Authorize: AuthorizeHeaderSenders(owns)}
	env := &Envelope{From: "bob@org.test", AuthUser: "bob@org.test", AuthRole: RolePersonal}
	_, err := p.Process(context.Background(), env, []string{"x@ext.test"}, []byte("From: alice@org.test\r\nSubject: s\r\n\r\nbody\r\n"))
	if err == nil || !strings.Contains(err.Error(), "not authorized") || signer.calls != 0 {
		t.Fatalf("err = %v, sign calls %d; want refused before signing", err, signer.calls)
	}
	env.AuthRole = RoleRelay
	if plan, err := p.Process(context.Background(), env, []string{"x@ext.test"}, []byte("From: alice@org.test\r\nSubject: s\r\n\r\nbody\r\n")); err != nil || len(plan.Parcels) != 1 {
		t.Fatalf("relay account: %+v %v", plan, err)
	}
}
