package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/directory"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/message"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/policy"
	"github.com/sealgate/sealgate/pkg/smime"
	"github.com/sealgate/sealgate/pkg/smime/cms"
)

// The oracle of issue #12: for any message and any rule set, every copy for
// a recipient whose decision demands encryption is a CMS envelope whose
// recipient infos name that recipient and nobody outside the copy's
// recipients, or a PDF carrier whose PDF is encrypted, or nothing (held,
// bounced, deferred) — never a copy containing the plain body; and no copy
// that leaves (internal pass-through aside) carries the subject password.

const oracleConfig = `data_dir = %q
[smtp]
hostname = "gw.example.org"
[relay]
mode = "dir"
dir = "./outbox"
[pki]
key_type = "p256"
[trust]
ca_files = [%q]
system_roots = false
[users]
source = "static"
groups = ["smime-users"]
[[users.static]]
email = "alice@example.org"
aliases = ["a.example@example.org"]
groups = ["smime-users"]
[policy]
internal_domains = ["example.org"]
[[policy.rules]]
name = "default"
encrypt = "smime-or-pdf"
[pdf]
password = ["subject", "preset"]
subject_tag = "[pw:"
`

// oracle is the pipeline serve builds, with partners whose certificates
// are in the store.
type oracle struct {
	t        testing.TB
	cfg      *config.Config
	rt       *runtime
	pipeline *gateway.Pipeline
	partners map[string]*testpeer.Identity // lower-case address → identity
}

func newOracle(t testing.TB) *oracle {
	testpeer.Require(t, "openssl")
	pk := testpeer.NewPKI(t)
	cfg, rt, p, _ := servePipeline(t, t.TempDir(), func(dataDir string) string { return fmt.Sprintf(oracleConfig, dataDir, pk.ChainFile) })
	ctx := context.Background()
	o := &oracle{t: t, cfg: cfg, rt: rt, pipeline: p, partners: map[string]*testpeer.Identity{}}
	for _, addr := range []string{"c1@partner.test", "c2@partner.test", "b1@partner.test"} {
		id := pk.Issue(t, addr, testpeer.IssueOptions{})
		pem, err := os.ReadFile(id.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := directory.ImportCertificates(ctx, rt.store, pem); err != nil {
			t.Fatal(err)
		}
		o.partners[addr] = id
	}
	return o
}

// scenario is one message and one rule set, drawn from a seed.
type scenario struct {
	rules    []config.PolicyRule
	from     string
	rcpts    []string
	msg      []byte
	marker   string // in the body only
	password string // in the subject tag, "" if none
}

var (
	oracleRcpts   = []string{"c1@partner.test", "C2@Partner.test", "b1@partner.test", "p1@partner.test", "p2@other.test", "bob@example.org"}
	oracleEncrypt = []string{"none", "smime", "smime-or-pdf", "pdf", "smime-required"}
	oracleSign    = []string{"always", "if-key", "never"}
	oracleFrom    = []string{"alice@example.org", "a.example@example.org", "Alice Example <ALICE@example.org>", "mallory@evil.test"}
	oracleTypes   = []string{
		"text/plain; charset=utf-8",
		"application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
		"application/x-pkcs7-mime; smime-type=authEnveloped-data",
		"multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b1",
		"multipart/mixed; boundary=b1",
		"text/calendar; method=REQUEST",
	}
)

func pick[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }

func drawScenario(seed1, seed2 uint64) scenario {
	r := rand.New(rand.NewPCG(seed1, seed2))
	var s scenario
	for i := range 1 + r.IntN(4) {
		rule := config.PolicyRule{Name: fmt.Sprintf("r%d", i), Encrypt: pick(r, oracleEncrypt), Sign: pick(r, oracleSign), OnFailure: pick(r, []string{"hold", "bounce"})}
		switch r.IntN(6) {
		case 0:
			rule.SubjectTag, rule.StripSubjectTag = "[secure]", r.IntN(2) == 0
		case 1:
			rule.Header = []string{"X-Classification: Confidential"}
		case 2:
			rule.RecipientDomain = []string{pick(r, []string{"partner.test", "other.test"})}
		case 3:
			rule.Sender = []string{pick(r, []string{"alice@example.org", "*@evil.test"})}
		case 4:
			rule.EncryptCalendar = r.IntN(2) == 0
		}
		s.rules = append(s.rules, rule)
	}
	// The last rule catches everything, as config check demands.
	s.rules = append(s.rules, config.PolicyRule{Name: "catch-all", Encrypt: pick(r, oracleEncrypt), Sign: pick(r, oracleSign), OnFailure: "hold"})

	s.from = pick(r, oracleFrom)
	for _, rc := range oracleRcpts {
		if r.IntN(2) == 0 {
			s.rcpts = append(s.rcpts, rc)
		}
	}
	if len(s.rcpts) == 0 {
		s.rcpts = []string{oracleRcpts[r.IntN(len(oracleRcpts))]}
	}
	s.marker = fmt.Sprintf("PLAIN-BODY-MARKER-%d", r.Uint32())
	subject := pick(r, []string{"offer", "[secure] offer", "=?utf-8?q?=5Bsecure=5D_Angebot?="})
	if r.IntN(2) == 0 {
		s.password = fmt.Sprintf("Pw-%d-Secret", 1_000_000+r.IntN(8_000_000))
		subject += " [pw:" + s.password + "]"
	}
	var h strings.Builder
	fmt.Fprintf(&h, "From: %s\r\n", s.from)
	var to []string
	for _, rc := range s.rcpts {
		if r.IntN(3) != 0 { // some are Bcc
			to = append(to, rc)
		}
	}
	if len(to) > 0 {
		fmt.Fprintf(&h, "To: %s\r\n", strings.Join(to, ", "))
	}
	fmt.Fprintf(&h, "Subject: %s\r\n", subject)
	if r.IntN(2) == 0 {
		fmt.Fprintf(&h, "Thread-Topic: %s\r\n", subject)
	}
	if r.IntN(3) == 0 {
		h.WriteString("X-Classification: Confidential\r\n")
	}
	ct := pick(r, oracleTypes)
	fmt.Fprintf(&h, "MIME-Version: 1.0\r\nContent-Type: %s\r\n", ct)
	var body string
	switch {
	case strings.HasPrefix(ct, "multipart/"):
		second := "Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte("not cms "+s.marker))
		body = "--b1\r\nContent-Type: text/plain\r\n\r\n" + s.marker + "\r\n--b1\r\n" + second + "\r\n--b1--\r\n"
	case strings.HasPrefix(ct, "application/"):
		if r.IntN(2) == 0 {
			h.WriteString("Content-Transfer-Encoding: base64\r\n")
			body = base64.StdEncoding.EncodeToString([]byte(s.marker)) + "\r\n"
			s.marker = base64.StdEncoding.EncodeToString([]byte(s.marker))
		} else {
			body = s.marker + "\r\n"
		}
	default:
		body = s.marker + "\r\n"
	}
	s.msg = []byte(h.String() + "\r\n" + body)
	return s
}

// check runs one scenario through the pipeline and applies the oracle.
func (o *oracle) check(s scenario) {
	t := o.t
	ctx := context.Background()
	o.cfg.Policy.Rules = s.rules
	pol, err := policy.FromConfig(o.cfg)
	if err != nil {
		return // a rule set config check refuses never runs
	}
	dec := policyDecider{p: pol, groups: staticGroupsFromConfig(o.cfg)}
	o.pipeline.Decider = dec
	plan, err := o.pipeline.Process(ctx, &gateway.Envelope{From: "alice@example.org"}, s.rcpts, s.msg)
	if err != nil {
		return // the queue holds every recipient
	}
	m, err := message.Parse(s.msg)
	if err != nil {
		t.Fatalf("the pipeline processed a message that does not parse: %v", err)
	}
	facts := &gateway.MessageFacts{Message: m, Sender: m.From.Lower(), Subject: m.Subject, Policy: policy.FactsOf(m)}
	for _, pc := range plan.Parcels {
		for _, rc := range pc.Rcpts {
			if pc.Method == "passthrough" && dec.Decide(ctx, facts, rc, true).Action == gateway.ActionPass {
				continue // internal mail passes untouched, by policy
			}
			if s.password != "" && bytes.Contains(pc.Data, []byte(s.password)) {
				t.Fatalf("the %s copy for %s carries the subject password\nrules %+v\n%s", pc.Method, rc, s.rules, s.msg)
			}
			_, hasCert := o.partners[strings.ToLower(rc)]
			if !dec.Decide(ctx, facts, rc, hasCert).MustEncrypt {
				continue
			}
			if bytes.Contains(pc.Data, []byte(s.marker)) {
				t.Fatalf("the %s copy for %s, whose rule demands encryption, carries the plain body\nrules %+v\n%s", pc.Method, rc, s.rules, pc.Data)
			}
			switch pc.Method {
			case "smime":
				o.checkEnvelope(pc, rc, m)
			case "pdf":
				checkPDFCarrier(t, pc.Data, s.marker)
			default:
				t.Fatalf("%s, whose rule demands encryption, got a %s copy\nrules %+v\n%s", rc, pc.Method, s.rules, s.msg)
			}
		}
	}
}

// checkEnvelope: the copy is a CMS envelope for rc, every recipient info
// belongs to a recipient of this copy, and a Bcc recipient (not in To or
// Cc of orig) shares an envelope with nobody.
func (o *oracle) checkEnvelope(pc gateway.Parcel, rc string, orig *message.Message) {
	t := o.t
	m, err := message.Parse(pc.Data)
	if err != nil {
		t.Fatalf("S/MIME copy does not parse: %v", err)
	}
	if k := smime.Prove(m.MediaType, m.Params, m.TransferEncoding, m.Body()); k != smime.KindEnveloped && k != smime.KindAuthEnveloped {
		t.Fatalf("S/MIME copy for %s is not a CMS envelope (%v)", rc, k)
	}
	der, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(m.Body())))
	if err != nil {
		t.Fatal(err)
	}
	env, err := cms.ParseEnvelope(der)
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]bool{}
	for _, r := range pc.Rcpts {
		own[strings.ToLower(r)] = true
	}
	found := false
	for _, ri := range env.Recipients {
		holder := ""
		for addr, id := range o.partners {
			if ri.Matches(id.Cert) {
				holder = addr
			}
		}
		if holder == strings.ToLower(rc) {
			found = true
		}
		if holder != "" && !own[holder] {
			t.Fatalf("the envelope for %v names %s, who is not a recipient of this copy", pc.Rcpts, holder)
		}
		if holder != "" && holder != strings.ToLower(rc) && (!orig.IsVisible(rc) || !orig.IsVisible(holder)) {
			t.Fatalf("Bcc disclosed: the envelope for %s also names %s (To/Cc: %v)", rc, holder, orig.Visible)
		}
	}
	if !found {
		t.Fatalf("the envelope for %s has no recipient info for its certificate", rc)
	}
}

// checkPDFCarrier: the carrier (signed or not) holds a PDF that is
// encrypted (an /Encrypt dictionary, AES-256 revision 6) and does not show
// the body.
func checkPDFCarrier(t testing.TB, carrier []byte, marker string) {
	t.Helper()
	m, err := message.Parse(carrier)
	if err != nil {
		t.Fatalf("PDF carrier does not parse: %v", err)
	}
	pdf := findPDF(m.Get("Content-Type"), m.BodyReader())
	if pdf == nil {
		t.Fatalf("no PDF in the carrier:\n%s", carrier)
	}
	if !bytes.Contains(pdf, []byte("/Encrypt")) || !bytes.Contains(pdf, []byte("/R 6")) || bytes.Contains(pdf, []byte(marker)) {
		t.Fatalf("the carrier's PDF is not AES-256 encrypted, or shows the body")
	}
}

// findPDF walks the MIME tree for the application/pdf part (decoded).
func findPDF(contentType string, body io.Reader) []byte {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil
	}
	if mt == "application/pdf" {
		b, _ := io.ReadAll(base64.NewDecoder(base64.StdEncoding, body))
		return b
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return nil
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			return nil
		}
		if pdf := findPDF(p.Header.Get("Content-Type"), p); pdf != nil {
			return pdf
		}
	}
}

// TestPipelineNeverLeaksPlain draws messages and rule sets and applies
// the oracle to what the pipeline makes of them.
func TestPipelineNeverLeaksPlain(t *testing.T) {
	o := newOracle(t)
	n := 300
	if testing.Short() {
		n = 60
	}
	for i := range n {
		o.check(drawScenario(uint64(i), 12))
	}
}

// FuzzPipelineOracle: the same oracle over fuzzed seeds; corpus in
// testdata/fuzz/FuzzPipelineOracle.
func FuzzPipelineOracle(f *testing.F) {
	for i := range 8 {
		f.Add(uint64(i), uint64(i*31))
	}
	o := newOracle(f)
	f.Fuzz(func(t *testing.T, a, b uint64) {
		o.t = t
		o.check(drawScenario(a, b))
	})
}

// servePipeline writes the config conf(data_dir) into dir and builds what
// serve builds from it: runtime, PKI and pipeline, closed at the test's end.
func servePipeline(t testing.TB, dir string, conf func(dataDir string) string) (*config.Config, *runtime, *gateway.Pipeline, *embeddedca.CA) {
	t.Helper()
	cfgFile := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfgFile, []byte(conf(filepath.Join(dir, "data"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt, err := openRuntime(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.store.Close() })
	ca, mgr, err := openPKI(ctx, rt)
	t.Cleanup(rt.Close)
	if err != nil {
		t.Fatal(err)
	}
	p, err := buildPipeline(cfg, rt, mgr)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, rt, p, ca
}
