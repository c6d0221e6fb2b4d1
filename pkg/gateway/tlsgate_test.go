package gateway

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/policy"
	"github.com/sealgate/sealgate/pkg/store"
)

// fakeVerdicts answers per domain and counts the questions.
type fakeVerdicts struct {
	v     map[string]TLSVerdict
	err   error
	calls map[string]int
}

func (f *fakeVerdicts) TLSVerdict(_ context.Context, domain string) (TLSVerdict, error) {
	f.calls[domain]++
	if f.err != nil {
		return TLSVerdict{}, f.err
	}
	return f.v[domain], nil
}

// TestTLSFallback: every rule TLS demand against every verdict, with each
// fallback: the copy goes as the rule says when the servers meet the
// demand; otherwise PDF mail (tls_fallback = pdf, without the TLS demand
// at the relay), held or bounced with the reason. S/MIME copies and
// envelopes the sender made are never held for the verdict (they go over
// what TLS there is when the servers fall short); a check that cannot
// answer defers the others.
func TestTLSFallback(t *testing.T) {
	verdicts := map[string]TLSVerdict{
		"dane.test":     {Verdict: "verified", DANE: true},
		"verified.test": {Verdict: "verified", Reason: "PKIX"},
		"enc.test":      {Verdict: "encrypted", Reason: "mx.enc.test: self-signed"},
		"plain.test":    {Verdict: "insecure", Reason: "mx.plain.test: no STARTTLS"},
	}
	plainRule := func(tls policy.TLSMode, fb policy.TLSFallback) Decision {
		return Decision{Rule: "r", Action: ActionDeliver, Sign: SignNever, Method: MethodNone, TLS: tls, TLSFallback: fb, RequireTLS: tls.AtLeast(policy.TLSRequired)}
	}
	pdfRule := func(tls policy.TLSMode, fb policy.TLSFallback) Decision {
		d := plainRule(tls, fb)
		d.Method, d.MustEncrypt = MethodPDF, true
		return d
	}
	smimeRule := func(tls policy.TLSMode, fb policy.TLSFallback) Decision {
		d := plainRule(tls, fb)
		d.Method, d.MustEncrypt = MethodSMIME, true
		return d
	}
	const (
		hold, bounce, deferred = "held", "bounced", "deferred"
	)
	cases := []struct {
		name    string
		d       Decision
		rcpt    string
		err     error
		want    string // parcel method, or held|bounced|deferred
		wantTLS bool   // the parcel demands TLS at the relay
		checked bool   // the verdict was asked
	}{
		{"opportunistic is not checked", plainRule(policy.TLSOpportunistic, policy.TLSFallbackHold), "x@plain.test", nil, "plain", false, false},
		{"required met by encrypted", plainRule(policy.TLSRequired, policy.TLSFallbackHold), "x@enc.test", nil, "plain", true, true},
		{"required, insecure, hold", plainRule(policy.TLSRequired, policy.TLSFallbackHold), "x@plain.test", nil, hold, false, true},
		{"verified met", plainRule(policy.TLSVerified, policy.TLSFallbackHold), "x@verified.test", nil, "plain", true, true},
		{"verified, encrypted only, pdf", plainRule(policy.TLSVerified, policy.TLSFallbackPDF), "x@enc.test", nil, "pdf", false, true},
		{"verified, insecure, pdf", plainRule(policy.TLSVerified, policy.TLSFallbackPDF), "x@plain.test", nil, "pdf", false, true},
		{"verified, encrypted only, hold", plainRule(policy.TLSVerified, policy.TLSFallbackHold), "x@enc.test", nil, hold, false, true},
		{"verified, encrypted only, bounce", plainRule(policy.TLSVerified, policy.TLSFallbackBounce), "x@enc.test", nil, bounce, false, true},
		{"dane met", plainRule(policy.TLSDANE, policy.TLSFallbackHold), "x@dane.test", nil, "plain", true, true},
		{"dane, PKIX only, pdf", plainRule(policy.TLSDANE, policy.TLSFallbackPDF), "x@verified.test", nil, "pdf", false, true},
		{"pdf rule met keeps its TLS demand", pdfRule(policy.TLSVerified, policy.TLSFallbackPDF), "x@verified.test", nil, "pdf", true, true},
		{"pdf rule not met goes over what TLS there is", pdfRule(policy.TLSVerified, policy.TLSFallbackPDF), "x@enc.test", nil, "pdf", false, true},
		{"smime copy to insecure servers goes over what TLS there is", smimeRule(policy.TLSVerified, policy.TLSFallbackHold), "c1@plain.test", nil, "smime", false, true},
		{"smime copy keeps a demand the servers meet", smimeRule(policy.TLSRequired, policy.TLSFallbackHold), "c1@enc.test", nil, "smime", true, true},
		{"check fails: deferred", plainRule(policy.TLSVerified, policy.TLSFallbackPDF), "x@enc.test", errors.New("no MX host answers"), deferred, false, true},
		{"check fails: smime still goes, under the rule's TLS", smimeRule(policy.TLSVerified, policy.TLSFallbackHold), "c1@enc.test", errors.New("no MX host answers"), "smime", true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fv := &fakeVerdicts{v: verdicts, err: c.err, calls: map[string]int{}}
			p := &Pipeline{Hostname: "gw.test", Decider: fakeDecider{"*": c.d}, Finder: fakeFinder{certs: map[string]string{"c1@plain.test": "C1", "c1@enc.test": "C1"}},
				Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}, PDF: fakePDF{}, TLSVerdicts: fv}
			msg := []byte("From: alice@org.test\r\nTo: " + c.rcpt + "\r\nSubject: s\r\n\r\nSECRET\r\n")
			plan, err := p.Process(context.Background(), &Envelope{}, []string{c.rcpt}, msg)
			if err != nil {
				t.Fatal(err)
			}
			got, why, reqTLS := "", "", false
			switch {
			case plan.Held[c.rcpt] != "":
				got, why = hold, plan.Held[c.rcpt]
			case plan.Bounced[c.rcpt] != "":
				got, why = bounce, plan.Bounced[c.rcpt]
			case plan.Deferred[c.rcpt] != "":
				got, why = deferred, plan.Deferred[c.rcpt]
			case len(plan.Parcels) == 1:
				got, why, reqTLS = plan.Parcels[0].Method, plan.Parcels[0].Reason, plan.Parcels[0].RequireTLS
			}
			if got != c.want || reqTLS != c.wantTLS {
				t.Fatalf("got %q (require TLS %v, %q), want %q (require TLS %v)", got, reqTLS, why, c.want, c.wantTLS)
			}
			if (fv.calls[rcptDomain(c.rcpt)] > 0) != c.checked {
				t.Fatalf("verdict asked %d times, want asked: %v", fv.calls[rcptDomain(c.rcpt)], c.checked)
			}
			// The reason names the domain and the verdict wherever the
			// fallback applied.
			fellBack := got == hold || got == bounce || (got == "pdf" && !reqTLS)
			if fellBack && (!strings.Contains(why, rcptDomain(c.rcpt)) || !strings.Contains(why, verdicts[rcptDomain(c.rcpt)].Verdict)) {
				t.Fatalf("reason %q does not say which domain and verdict", why)
			}
			if got == deferred && !strings.Contains(why, "no MX host answers") {
				t.Fatalf("deferral reason %q", why)
			}
			if got == bounce && !strings.HasPrefix(why, "5.7.1 ") {
				t.Fatalf("bounce reason %q", why)
			}
		})
	}
}

// TestTLSVerdictOncePerMessage: many recipients at one domain ask the
// verdict once per message (the cache behind it makes it once per TTL).
func TestTLSVerdictOncePerMessage(t *testing.T) {
	fv := &fakeVerdicts{v: map[string]TLSVerdict{"enc.test": {Verdict: "encrypted"}, "v.test": {Verdict: "verified"}}, calls: map[string]int{}}
	d := Decision{Rule: "r", Action: ActionDeliver, Sign: SignNever, TLS: policy.TLSVerified, TLSFallback: policy.TLSFallbackPDF, RequireTLS: true}
	p := &Pipeline{Hostname: "gw.test", Decider: fakeDecider{"*": d}, Finder: fakeFinder{}, Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}, PDF: fakePDF{}, TLSVerdicts: fv}
	rcpts := []string{"a@enc.test", "b@enc.test", "c@ENC.test", "a@v.test", "b@v.test"}
	plan, err := p.Process(context.Background(), &Envelope{}, rcpts, []byte("From: alice@org.test\r\nTo: a@enc.test\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fv.calls["enc.test"] != 1 || fv.calls["v.test"] != 1 {
		t.Fatalf("calls %v, want one per domain", fv.calls)
	}
	var got []string
	for _, pc := range plan.Parcels {
		got = append(got, pc.Method+":"+strings.Join(pc.Rcpts, ","))
	}
	sort.Strings(got)
	want := "pdf:a@enc.test pdf:b@enc.test pdf:c@ENC.test plain:a@v.test,b@v.test"
	if strings.Join(got, " ") != want {
		t.Fatalf("parcels %v, want %s", got, want)
	}
}

// TestTLSRelaxedCopiesApart: an S/MIME copy relaxed by the check (its
// domain's servers fall short) does not share an envelope with one whose
// domain meets the rule: a shared copy would travel under the strictest
// demand and the relaxed recipient would wait for TLS that never comes,
// or the strict one would lose its demand.
func TestTLSRelaxedCopiesApart(t *testing.T) {
	fv := &fakeVerdicts{v: map[string]TLSVerdict{"plain.test": {Verdict: "insecure"}, "v.test": {Verdict: "verified"}}, calls: map[string]int{}}
	d := Decision{Rule: "r", Action: ActionDeliver, Sign: SignNever, Method: MethodSMIME, MustEncrypt: true, TLS: policy.TLSVerified, RequireTLS: true}
	p := &Pipeline{Hostname: "gw.test", Decider: fakeDecider{"*": d}, Finder: fakeFinder{certs: map[string]string{"a@plain.test": "A", "b@v.test": "B"}},
		Signer: &fakeSigner{}, Encrypter: fakeEncrypter{}, PDF: fakePDF{}, TLSVerdicts: fv}
	plan, err := p.Process(context.Background(), &Envelope{}, []string{"a@plain.test", "b@v.test"},
		[]byte("From: alice@org.test\r\nTo: a@plain.test, b@v.test\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pc := range plan.Parcels {
		got = append(got, fmt.Sprintf("%s:%s:%v:%v", pc.Method, strings.Join(pc.Rcpts, ","), pc.RequireTLS, pc.TLS))
	}
	sort.Strings(got)
	want := "smime:a@plain.test:false:opportunistic smime:b@v.test:true:verified"
	if strings.Join(got, " ") != want {
		t.Fatalf("parcels %v, want %s", got, want)
	}
}

// TestRouteTLS: the capability API's Route shows the domain's verdict
// and decides as Process does: PDF where the fallback says so, a failure
// for hold, and a deferral (TLSUndecided) when the check cannot answer.
func TestRouteTLS(t *testing.T) {
	fv := &fakeVerdicts{v: map[string]TLSVerdict{"enc.test": {Verdict: "encrypted"}, "v.test": {Verdict: "verified"}}, calls: map[string]int{}}
	rule := func(fb policy.TLSFallback) Decision {
		return Decision{Rule: "r", Action: ActionDeliver, Sign: SignNever, TLS: policy.TLSVerified, TLSFallback: fb, RequireTLS: true}
	}
	cases := []struct {
		name     string
		d        Decision
		rcpt     string
		err      error
		kind     RouteKind
		verdict  string
		undecide bool
	}{
		{"met", rule(policy.TLSFallbackHold), "a@v.test", nil, RoutePlain, "verified", false},
		{"pdf fallback", rule(policy.TLSFallbackPDF), "a@enc.test", nil, RoutePDF, "encrypted", false},
		{"hold", rule(policy.TLSFallbackHold), "a@enc.test", nil, RouteFail, "encrypted", false},
		{"check down", rule(policy.TLSFallbackPDF), "a@enc.test", errors.New("resolver down"), RouteDefer, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fv.err = c.err
			p := &Pipeline{Decider: fakeDecider{"*": c.d}, TLSVerdicts: fv}
			facts, err := FactsFor("alice@org.test", c.rcpt)
			if err != nil {
				t.Fatal(err)
			}
			r := p.Route(context.Background(), facts, c.rcpt, nil, nil)
			got := ""
			if r.TLS != nil {
				got = r.TLS.Verdict
			}
			if r.Kind != c.kind || got != c.verdict || r.TLSUndecided != c.undecide {
				t.Fatalf("route %+v (verdict %q), want kind %v verdict %q undecided %v", r, got, c.kind, c.verdict, c.undecide)
			}
		})
	}
}

// TestFallbackReasonInDeliveredEvent: a PDF copy sent because the
// recipient's servers fell short says so in its delivered event (the SOC
// sees why a verified rule's mail went as PDF); other copies carry none.
func TestFallbackReasonInDeliveredEvent(t *testing.T) {
	const why = "the mail servers of enc.test do not give the TLS rule r demands (tls = verified, check: encrypted); sent as PDF mail"
	q, _ := testQueue(t, planFunc(func(rcpts []string, msg []byte) (*Plan, error) {
		return &Plan{MessageID: "<fb@org.test>", Parcels: []Parcel{
			{Rcpts: []string{"x@enc.test"}, Data: msg, Method: "pdf", Rule: "r", Reason: why},
			{Rcpts: []string{"y@v.test"}, Data: msg, Method: "plain", Rule: "r"},
		}}, nil
	}), &recordingRelay{answer: func(string) error { return nil }})
	runQueue(t, q)
	id := accept(t, q, "x@enc.test", "y@v.test")
	waitFor(t, "both delivered", func() bool {
		return len(storedEvents(t, q, store.EventFilter{QueueID: id, Outcomes: []string{events.Delivered}})) == 2
	})
	for _, e := range storedEvents(t, q, store.EventFilter{QueueID: id, Outcomes: []string{events.Delivered}}) {
		want := ""
		if e.Recipient == "x@enc.test" {
			want = why
		}
		if e.Reason != want {
			t.Fatalf("%s: delivered reason %q, want %q", e.Recipient, e.Reason, want)
		}
	}
}
