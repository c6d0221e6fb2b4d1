package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/api"
	"github.com/sealgate/sealgate/pkg/capability"
	"github.com/sealgate/sealgate/pkg/directory"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/policy"
	"github.com/sealgate/sealgate/pkg/store"
)

// expectedFromPlan is the answer the pipeline's own plan implies for rc:
// the method and action its copy actually got.
func expectedFromPlan(plan *gateway.Plan, rc string) (method, action string) {
	if _, ok := plan.Held[rc]; ok {
		return capability.MethodHold, capability.ActionHold
	}
	if _, ok := plan.Bounced[rc]; ok {
		return capability.MethodHold, capability.ActionBounce
	}
	if _, ok := plan.Deferred[rc]; ok {
		return "deferred", capability.ActionDefer
	}
	for _, pc := range plan.Parcels {
		if !slices.Contains(pc.Rcpts, rc) {
			continue
		}
		switch pc.Method {
		case "smime":
			return capability.MethodSMIME, capability.ActionDeliver
		case "pdf":
			return capability.MethodPDF, capability.ActionDeliver
		case "signed":
			return capability.MethodSigned, capability.ActionDeliver
		case "plain":
			return capability.MethodNone, capability.ActionDeliver
		case "passthrough":
			return capability.MethodNone, capability.ActionPass
		}
		return "parcel " + pc.Method, ""
	}
	return "nothing", ""
}

// TestCapabilityAgreesWithPipeline is the capability API's oracle: for
// drawn rule sets, senders (a user, an alias, an outsider) and recipients
// (certificate holders, one with a preset PDF password, others without,
// an internal one), the answer names exactly what Process then does with
// the plainest message from that sender to that recipient: the parcel's
// method, or held, or bounced. The pipeline is the one serve builds, with
// the embedded CA signing and partners' certificates (openssl) in the store.
func TestCapabilityAgreesWithPipeline(t *testing.T) {
	o := newOracle(t)
	ctx := context.Background()
	if err := o.rt.store.SetPDFPassword(ctx, "p1@partner.test", []byte("preset-password-1"), "preset"); err != nil {
		t.Fatal(err)
	}
	h := newCapabilityHandler(o.pipeline, nil)
	if h == nil || h.Service.PDF == nil {
		t.Fatal("the capability API was not built from the pipeline's parts")
	}
	senders := []string{"alice@example.org", "a.example@example.org", "mallory@evil.test"}
	rounds := 25
	if testing.Short() {
		rounds = 8
	}
	seen := map[string]int{}
	for i := range rounds {
		s := drawScenario(uint64(i), 77)
		o.cfg.Policy.Rules = s.rules
		pol, err := policy.FromConfig(o.cfg)
		if err != nil {
			continue
		}
		o.pipeline.Decider = policyDecider{p: pol, groups: staticGroupsFromConfig(o.cfg)}
		r := rand.New(rand.NewPCG(uint64(i), 3))
		sender := senders[r.IntN(len(senders))]
		rcpts := []string{"c1@partner.test", "C2@Partner.test", "p1@partner.test", "p2@other.test", "bob@example.org"}
		answers := h.Service.Answer(ctx, sender, rcpts)
		for j, rc := range rcpts {
			msg := []byte("From: " + sender + "\r\nTo: " + rc + "\r\n\r\nbody\r\n")
			plan, err := o.pipeline.Process(ctx, &gateway.Envelope{From: sender}, []string{rc}, msg)
			if err != nil {
				t.Fatalf("Process: %v", err)
			}
			wantMethod, wantAction := expectedFromPlan(plan, rc)
			a := answers[j]
			if a.Method != wantMethod || a.Action != wantAction {
				t.Fatalf("rules %+v\n%s → %s: capability says %s/%s (%s), the pipeline did %s/%s (plan %+v)",
					s.rules, sender, rc, a.Method, a.Action, a.Reason, wantMethod, wantAction, plan)
			}
			if a.Recipient != rc {
				t.Fatalf("answer for %q names %q", rc, a.Recipient)
			}
			seen[a.Method]++
		}
	}
	// The drawn rule sets must have reached every method the oracle can
	// produce, or the comparison proved little.
	for _, m := range []string{capability.MethodSMIME, capability.MethodPDF, capability.MethodSigned, capability.MethodHold, capability.MethodNone} {
		if seen[m] == 0 {
			t.Errorf("no drawn case answered %q (seen %v): draw more rule sets", m, seen)
		}
	}
}

// capEnv is serve's internal mux with the capability API over a real
// store, directory and PKI, and tokens.
type capEnv struct {
	rt       *runtime
	pipeline *gateway.Pipeline
	mux      *http.ServeMux
	token    string // capability:read
	events   string // events:read only
	pki      *testpeer.PKI
}

const capConfig = `data_dir = %q
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
groups = ["smime-users"]
[policy]
internal_domains = ["example.org"]
[[policy.rules]]
name = "casual"
recipient_domain = ["casual.test"]
sign = "always"
encrypt = "smime"
on_failure = "hold"
[[policy.rules]]
name = "default"
sign = "always"
encrypt = "smime-or-pdf"
on_failure = "hold"
[pdf]
password = ["preset"]
[http]
cors_origins = ["http://addin.example.test:8080"]
%s
`

func newCapEnv(t testing.TB, extra string) *capEnv {
	testpeer.Require(t, "openssl")
	pk := testpeer.NewPKI(t)
	_, rt, p, ca := servePipeline(t, t.TempDir(), func(dataDir string) string { return fmt.Sprintf(capConfig, dataDir, pk.ChainFile, extra) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &capEnv{rt: rt, pipeline: p, pki: pk,
		mux: internalMux(internalHTTP{rt: rt, ca: ca, log: log, capability: newCapabilityHandler(p, log)})}
	e.token = e.newToken(t, "addin", api.ScopeCapabilityRead)
	e.events = e.newToken(t, "siem", api.ScopeEventsRead)
	return e
}

func (e *capEnv) newToken(t testing.TB, name, scope string) string {
	tok, hash, err := api.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rt.store.CreateAPIToken(context.Background(), store.APIToken{Name: name, Hash: hash, Scopes: []string{scope}, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return tok
}

// importPartner issues a certificate for addr with openssl's CA and
// imports it, as `directory import` does; it returns the certificate DER.
func (e *capEnv) importPartner(t testing.TB, addr string, opts testpeer.IssueOptions) []byte {
	id := e.pki.Issue(t, addr, opts)
	pem, err := os.ReadFile(id.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := directory.ImportCertificates(context.Background(), e.rt.store, pem); err != nil {
		t.Fatal(err)
	}
	return testpeer.ReadCert(t, id.CertFile).Raw
}

func (e *capEnv) do(t testing.TB, method, target, token, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.mux.ServeHTTP(w, req)
	return w
}

// TestCapabilityAnswers: the answers over HTTP for a certificate holder
// (RSA, openssl's CA), one with a preset PDF password, one with neither,
// an internal colleague, and an outsider as sender, with the exact JSON
// fields the add-in reads, and nothing secret in them.
func TestCapabilityAnswers(t *testing.T) {
	e := newCapEnv(t, "")
	ctx := context.Background()
	der := e.importPartner(t, "carol@partner.test", testpeer.IssueOptions{})
	ecDER := e.importPartner(t, "erin@partner.test", testpeer.IssueOptions{KeyType: "p256"})
	const presetPW = "Preset-Password-42"
	if err := e.rt.store.SetPDFPassword(ctx, "pat@partner.test", []byte(presetPW), "preset"); err != nil {
		t.Fatal(err)
	}
	body := `{"sender":"alice@example.org","recipients":["carol@partner.test","erin@partner.test","pat@partner.test","nobody@partner.test","bob@example.org"]}`
	w := e.do(t, "POST", "/api/v1/capability", e.token, body)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("POST = %d %s\n%s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	raw := w.Body.String()
	for _, secret := range []string{presetPW, base64.StdEncoding.EncodeToString(der), base64.StdEncoding.EncodeToString(ecDER), "BEGIN CERTIFICATE", "PRIVATE KEY"} {
		if strings.Contains(raw, secret) {
			t.Fatalf("the answer carries %q:\n%s", secret[:min(len(secret), 20)], raw)
		}
	}
	var got []map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	type want struct {
		rule, method, action, password string
		available                      any
		algorithms                     []any
	}
	wants := []want{
		{"default", "smime", "deliver", "none", true, []any{"aes256-cbc", "rsaes-pkcs1-v1_5"}},
		{"default", "smime", "deliver", "none", true, []any{"aes256-cbc", "ecdh-x963kdf-sha256-aes256-wrap"}},
		{"default", "pdf", "deliver", "preset", false, []any{}},
		{"default", "hold", "hold", "none", false, []any{}},
		{"internal", "none", "pass", "none", false, []any{}},
	}
	if len(got) != len(wants) {
		t.Fatalf("%d answers for %d recipients:\n%s", len(got), len(wants), raw)
	}
	for i, wt := range wants {
		a := got[i]
		sm := a["smime"].(map[string]any)
		if a["method"] != wt.method || a["action"] != wt.action || a["pdf"].(map[string]any)["password"] != wt.password ||
			sm["available"] != wt.available || fmt.Sprint(sm["algorithms"]) != fmt.Sprint(wt.algorithms) || a["rule"] != wt.rule {
			t.Errorf("answer %d = %v, want %+v", i, a, wt)
		}
		if tl := a["tls"].(map[string]any); tl["verdict"] != "unknown" {
			t.Errorf("answer %d tls = %v, want verdict unknown until MX delivery", i, tl)
		}
	}
	if sm := got[0]["smime"].(map[string]any); sm["source"] != "store" || sm["not_after"] == nil {
		t.Errorf("certificate holder: smime = %v, want source store and not_after", sm)
	}

	// The same for one recipient with GET; an outsider as sender: the
	// rule signs always, the pipeline cannot sign for them, so it holds.
	w = e.do(t, "GET", "/api/v1/recipients/carol%40partner.test/capability?sender=mallory%40evil.test", e.token, "")
	var one capability.Answer
	if err := json.Unmarshal(w.Body.Bytes(), &one); err != nil || w.Code != 200 {
		t.Fatalf("GET = %d %s", w.Code, w.Body)
	}
	if one.Method != "hold" || one.Recipient != "carol@partner.test" || one.SMIME.Available == nil || !*one.SMIME.Available {
		t.Fatalf("outsider sender: %+v, want hold with the certificate available", one)
	}
}

// TestCapabilityRefusesBadInput plays the caller that sends what no mail
// client would: each is a 400 problem naming the field, before any lookup.
func TestCapabilityRefusesBadInput(t *testing.T) {
	e := newCapEnv(t, "")
	many := make([]string, capability.MaxBatch+1)
	for i := range many {
		many[i] = fmt.Sprintf(`"r%d@partner.test"`, i)
	}
	tests := []struct {
		name, method, target, body, field string
		status                            int
	}{
		{"CRLF in the address", "GET", "/api/v1/recipients/bob%0d%0aBcc:%20x%40evil.test@partner.test/capability?sender=alice@example.org", "", "address", 400},
		{"Cyrillic look-alike", "GET", "/api/v1/recipients/bob@p%D0%B0rtner.test/capability?sender=alice@example.org", "", "address", 400},
		{"fullwidth at sign", "GET", "/api/v1/recipients/bob%EF%BC%A0partner.test/capability?sender=alice@example.org", "", "address", 400},
		{"display name", "GET", "/api/v1/recipients/Bob%20%3Cbob@partner.test%3E/capability?sender=alice@example.org", "", "address", 400},
		{"two at signs", "GET", "/api/v1/recipients/bob@evil.test@partner.test/capability?sender=alice@example.org", "", "address", 400},
		{"overlong", "GET", "/api/v1/recipients/" + strings.Repeat("a", 250) + "@partner.test/capability?sender=alice@example.org", "", "address", 400},
		{"quoted local part", "GET", "/api/v1/recipients/%22bob%22@partner.test/capability?sender=alice@example.org", "", "address", 400},
		{"address literal", "GET", "/api/v1/recipients/bob@%5B127.0.0.1%5D/capability?sender=alice@example.org", "", "address", 400},
		{"sender missing", "GET", "/api/v1/recipients/bob@partner.test/capability", "", "sender", 400},
		{"sender twice", "GET", "/api/v1/recipients/bob@partner.test/capability?sender=alice@example.org&sender=eve@example.org", "", "sender", 400},
		{"sender encoded word", "GET", "/api/v1/recipients/bob@partner.test/capability?sender=%3D%3Futf-8%3Fq%3Falice%3F%3D@example.org", "", "sender", 400},
		{"unknown parameter", "GET", "/api/v1/recipients/bob@partner.test/capability?sender=alice@example.org&debug=1", "", "debug", 400},
		{"batch of 101", "POST", "/api/v1/capability", `{"sender":"alice@example.org","recipients":[` + strings.Join(many, ",") + `]}`, "recipients", 400},
		{"empty batch", "POST", "/api/v1/capability", `{"sender":"alice@example.org","recipients":[]}`, "recipients", 400},
		{"bad third recipient", "POST", "/api/v1/capability", `{"sender":"alice@example.org","recipients":["a@partner.test","b@partner.test","c@partner.test\r\n"]}`, "recipients[2]", 400},
		{"recipient not a string", "POST", "/api/v1/capability", `{"sender":"alice@example.org","recipients":[1]}`, "recipients", 400},
		{"unknown field", "POST", "/api/v1/capability", `{"sender":"alice@example.org","recipients":["a@partner.test"],"subject":"x"}`, "body", 400},
		{"two objects", "POST", "/api/v1/capability", `{"sender":"alice@example.org","recipients":["a@partner.test"]}{}`, "body", 400},
		{"no sender", "POST", "/api/v1/capability", `{"recipients":["a@partner.test"]}`, "sender", 400},
		{"huge body", "POST", "/api/v1/capability", `{"sender":"alice@example.org","recipients":["` + strings.Repeat("a", 70<<10) + `"]}`, "", 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(t, tt.method, tt.target, e.token, tt.body)
			var p struct {
				Title, Detail string
				Status        int
			}
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || w.Code != tt.status || p.Status != tt.status ||
				w.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("= %d %s %s, want a %d problem", w.Code, w.Header().Get("Content-Type"), w.Body, tt.status)
			}
			if tt.field != "" && !strings.HasPrefix(p.Detail, tt.field+":") {
				t.Fatalf("detail %q does not name the field %q", p.Detail, tt.field)
			}
			if strings.ContainsAny(p.Title+p.Detail, "\r\n") {
				t.Fatalf("the problem echoes control characters: %q", p.Detail)
			}
		})
	}
	// A body sent as a form (a page posting cross-site without a
	// preflight) is not read.
	w := e.do(t, "POST", "/api/v1/capability", e.token, "", "Content-Type", "text/plain")
	if w.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain POST = %d, want 415", w.Code)
	}
}

// TestCapabilityAccessAndCORS: no token 401, the events scope 403, the
// capability scope 200; browsers get CORS headers only for the
// configured origin, and a preflight from another origin is refused.
func TestCapabilityAccessAndCORS(t *testing.T) {
	e := newCapEnv(t, "")
	const target = "/api/v1/recipients/bob@partner.test/capability?sender=alice@example.org"
	const allowed, other = "http://addin.example.test:8080", "https://evil.example"
	tests := []struct {
		name, method, token, origin string
		status                      int
		acao                        string
	}{
		{"no token", "GET", "", "", 401, ""},
		{"events scope only", "GET", e.events, "", 403, ""},
		{"capability scope", "GET", e.token, "", 200, ""},
		{"allowed origin", "GET", e.token, allowed, 200, allowed},
		{"allowed origin sees its 401", "GET", "", allowed, 401, allowed},
		{"other origin gets no CORS header", "GET", e.token, other, 200, ""},
		{"preflight from the allowed origin", "OPTIONS", "", allowed, 204, allowed},
		{"preflight from another origin", "OPTIONS", "", other, 403, ""},
		{"preflight without origin", "OPTIONS", "", "", 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := []string{}
			if tt.origin != "" {
				hdr = append(hdr, "Origin", tt.origin)
			}
			if tt.method == "OPTIONS" {
				hdr = append(hdr, "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization")
			}
			w := e.do(t, tt.method, target, tt.token, "", hdr...)
			if w.Code != tt.status || w.Header().Get("Access-Control-Allow-Origin") != tt.acao {
				t.Fatalf("= %d ACAO %q, want %d %q\n%s", w.Code, w.Header().Get("Access-Control-Allow-Origin"), tt.status, tt.acao, w.Body)
			}
			if tt.status == 204 && !strings.Contains(w.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
				t.Fatalf("preflight allows headers %q, want Authorization", w.Header().Get("Access-Control-Allow-Headers"))
			}
			if w.Header().Get("Access-Control-Allow-Credentials") != "" {
				t.Fatal("credentials allowed: the API uses bearer tokens, never cookies")
			}
		})
	}
	w := e.do(t, "OPTIONS", "/api/v1/capability", "", "", "Origin", allowed, "Access-Control-Request-Method", "POST")
	if w.Code != 204 || w.Header().Get("Access-Control-Allow-Methods") != "POST" {
		t.Fatalf("batch preflight = %d %v", w.Code, w.Header())
	}
}

// TestCapabilitySlowKeyServer: a key server that accepts connections and
// answers nothing (a real slapd, stopped with SIGSTOP) makes its
// recipients "unknown" once its timeout is over, and the request returns;
// a recipient whose certificate is in the store is still answered.
func TestCapabilitySlowKeyServer(t *testing.T) {
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{})
	e := newCapEnv(t, fmt.Sprintf("[[keyservers]]\nname = \"partners\"\nurl = %q\nbase_dn = %q\ntimeout = \"1s\"\n", slapd.URL, slapd.Suffix))
	e.importPartner(t, "carol@partner.test", testpeer.IssueOptions{})
	slapd.Freeze(t)
	body := `{"sender":"alice@example.org","recipients":["carol@partner.test","dave@partner.test","erin@partner.test","sam@casual.test"]}`
	w := e.do(t, "POST", "/api/v1/capability", e.token, body)
	if w.Code != 200 {
		t.Fatalf("POST = %d %s", w.Code, w.Body)
	}
	var got []capability.Answer
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got[0].Method != capability.MethodSMIME {
		t.Errorf("carol (certificate in the store) = %+v, want smime", got[0])
	}
	for _, a := range got[1:3] {
		if a.Method != capability.MethodUnknown || a.SMIME.Available != nil || a.Action != capability.ActionHold {
			t.Errorf("%s behind the stopped key server = %+v, want unknown (available null, the pipeline would hold)", a.Recipient, a)
		}
	}
	// Opportunistic S/MIME: the pipeline defers rather than send a
	// signed copy the rule might have encrypted.
	if a := got[3]; a.Method != capability.MethodUnknown || a.SMIME.Available != nil || a.Action != capability.ActionDefer || a.Rule != "casual" {
		t.Errorf("sam@casual.test behind the stopped key server = %+v, want unknown/defer", a)
	}
	if !strings.Contains(w.Body.String(), `"available":null`) {
		t.Errorf("available is not null in %s", w.Body)
	}
}

// BenchmarkCapabilityBatch100 measures POST /api/v1/capability for 100
// recipients whose certificates are in the store, with warm caches
// (directory answers, sender's groups, signer), through the internal mux
// including the bearer-token check. It reports the p50 and p99 request
// latency.
func BenchmarkCapabilityBatch100(b *testing.B) {
	e := newCapEnv(b, "")
	rcpts := make([]string, 100)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("partner%03d@partner.test", i)
		e.importPartner(b, rcpts[i], testpeer.IssueOptions{})
	}
	js, _ := json.Marshal(map[string]any{"sender": "alice@example.org", "recipients": rcpts})
	body := string(js)
	for range 2 { // warm the caches
		if w := e.do(b, "POST", "/api/v1/capability", e.token, body); w.Code != 200 || !strings.Contains(w.Body.String(), `"method":"smime"`) {
			b.Fatalf("warm-up = %d %.300s", w.Code, w.Body)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		w := e.do(b, "POST", "/api/v1/capability", e.token, body)
		lat = append(lat, time.Since(t0))
		if w.Code != 200 {
			b.Fatalf("= %d", w.Code)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
