package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/config"
)

// explainJSON runs `policy explain` on config.example.toml and decodes the
// JSON answer.
func explainJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out, errOut bytes.Buffer
	full := append([]string{"--config", "../../config.example.toml", "--output", "json", "policy", "explain"}, args...)
	if code := run(full, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	return m
}

// withCertificates makes the certificate seam report a valid certificate
// for the given addresses only, as pkg/directory would.
func withCertificates(t *testing.T, have ...string) {
	t.Helper()
	old := lookupRecipientCert
	t.Cleanup(func() { lookupRecipientCert = old })
	lookupRecipientCert = func(ctx context.Context, cfg *config.Config, email string) (bool, string, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("certificate lookup without a deadline")
		}
		for _, h := range have {
			if strings.EqualFold(h, email) {
				return true, "test directory", nil
			}
		}
		return false, "test directory", nil
	}
}

func TestPolicyExplainExampleConfig(t *testing.T) {
	withCertificates(t, "carol@partner.test")
	cases := []struct {
		name string
		args []string
		want map[string]any
	}{
		{"internal recipient passes through", []string{"--from", "alice@example.org", "--to", "bob@example.org"},
			map[string]any{"rule": "internal", "sign": false, "encrypt": "none", "method": "none", "action": "pass", "certificate": false}},
		{"external with certificate: S/MIME", []string{"--from", "alice@example.org", "--to", "carol@partner.test"},
			map[string]any{"rule": "default", "sign": true, "encrypt": "smime", "method": "smime", "on_failure": "hold", "tls": "opportunistic", "action": "deliver", "certificate": true}},
		{"external without certificate: signed only", []string{"--from", "alice@example.org", "--to", "dave@partner.test"},
			map[string]any{"rule": "default", "sign": true, "encrypt": "smime", "method": "none", "on_failure": "hold", "tls": "opportunistic", "action": "deliver", "certificate": false}},
		{"[secure] without certificate: PDF, tag stripped", []string{"--from", "alice@example.org", "--to", "dave@partner.test", "--subject", "[secure] Contract"},
			map[string]any{"rule": "secure-subject", "sign": true, "encrypt": "smime-or-pdf", "method": "pdf", "strip_subject_tag": true, "subject": "Contract", "action": "deliver"}},
		{"[secure] with certificate: S/MIME", []string{"--from", "alice@example.org", "--to", "carol@partner.test", "--subject", "Re: [SECURE] Contract"},
			map[string]any{"rule": "secure-subject", "method": "smime", "fallback": "pdf", "subject": "Re: Contract"}},
		{"confidential without certificate: hold", []string{"--from", "alice@example.org", "--to", "dave@partner.test", "--header", "X-Classification: Confidential", "--subject", "[secure] x"},
			map[string]any{"rule": "confidential-never-plain", "encrypt": "smime-required", "method": "none", "on_failure": "hold", "tls": "required", "action": "hold", "certificate": false}},
		{"confidential with certificate: S/MIME, TLS required", []string{"--from", "alice@example.org", "--to", "carol@partner.test", "--header", "x-classification:confidential"},
			map[string]any{"rule": "confidential-never-plain", "method": "smime", "tls": "required", "action": "deliver"}},
		{"meeting request exempt", []string{"--from", "alice@example.org", "--to", "carol@partner.test", "--calendar"},
			map[string]any{"rule": "default", "method": "none", "calendar_exempt": true}},
		{"display-name address and static groups", []string{"--from", "Alice <ALICE@example.org>", "--to", "Dave <dave@partner.test>"},
			map[string]any{"from": "ALICE@example.org", "to": "dave@partner.test", "sender_groups_source": "users.static"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := explainJSON(t, c.args...)
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			for _, k := range []string{"rule", "sign", "encrypt", "method", "on_failure", "tls", "certificate", "trace"} {
				if _, ok := got[k]; !ok {
					t.Errorf("JSON lacks %q", k)
				}
			}
		})
	}
}

func TestPolicyExplainTraceNamesFailingConditions(t *testing.T) {
	withCertificates(t)
	got := explainJSON(t, "--from", "alice@example.org", "--to", "dave@partner.test", "--subject", "Hello")
	trace, _ := got["trace"].([]any)
	if len(trace) != 3 {
		t.Fatalf("trace has %d rules, want 3: %v", len(trace), got["trace"])
	}
	want := []struct{ rule, result, condition string }{
		{"confidential-never-plain", "no match", "header"},
		{"secure-subject", "no match", "subject_tag"},
		{"default", "matched", ""},
	}
	for i, w := range want {
		tr := trace[i].(map[string]any)
		cond, _ := tr["condition"].(string)
		if tr["rule"] != w.rule || tr["result"] != w.result || cond != w.condition {
			t.Errorf("trace[%d] = %v, want %+v", i, tr, w)
		}
		if line, _ := tr["line"].(float64); line <= 0 {
			t.Errorf("trace[%d] has no line", i)
		}
	}

	var out, errOut bytes.Buffer
	code := run([]string{"--config", "../../config.example.toml", "policy", "explain", "--from", "alice@example.org", "--to", "dave@partner.test"}, strings.NewReader(""), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, s := range []string{"rule         default (line ", "- confidential-never-plain (line ", `no match: header: the message has no header ["X-Classification: Confidential"]`, "+ default"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("human output lacks %q:\n%s", s, out.String())
		}
	}
}

func TestPolicyExplainErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	example, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	// A rule after the catch-all "default" can never match.
	body := string(example) + "\n[[policy.rules]]\nname = \"too-late\"\nrecipient_domain = [\"tax.example\"]\nencrypt = \"pdf\"\n"
	if err := os.WriteFile(bad, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	lateLine := strings.Count(string(example), "\n") + 2
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing --to", []string{"--config", "../../config.example.toml", "policy", "explain", "--from", "a@example.org"}, 2, "--to is required"},
		{"bad address", []string{"--config", "../../config.example.toml", "policy", "explain", "--from", "a@example.org", "--to", "nobody"}, 2, "not an email address"},
		{"bad header", []string{"--config", "../../config.example.toml", "policy", "explain", "--from", "a@example.org", "--to", "b@x.test", "--header", "X-Classification Confidential"}, 2, "no ':'"},
		{"unreachable rule", []string{"--config", bad, "policy", "explain", "--from", "a@example.org", "--to", "b@x.test"}, 2,
			`bad.toml:` + strconv.Itoa(lateLine) + `: policy.rules[3]: rule "too-late": unreachable: rule "default" (line`},
		{"config check reports policy problems", []string{"--config", bad, "config", "check"}, 2,
			`bad.toml:` + strconv.Itoa(lateLine) + `: policy.rules[3]: rule "too-late": unreachable: rule "default" (line`},
		{"missing config", []string{"--config", filepath.Join(dir, "none.toml"), "policy", "explain", "--from", "a@example.org", "--to", "b@x.test"}, 2, "does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(c.args, strings.NewReader(""), &out, &errOut)
			if code != c.code || !strings.Contains(errOut.String(), c.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut.String(), c.code, c.want)
			}
		})
	}
}

func TestPolicyExplainMessageFile(t *testing.T) {
	withCertificates(t, "carol@partner.test")
	meeting := "../../pkg/policy/testdata/outlook-meeting.eml"
	cases := []struct {
		name string
		args []string
		want map[string]any
	}{
		{"confidential meeting request, no certificate: hold", []string{"--message", meeting, "--to", "bob@partner.test"},
			map[string]any{"rule": "confidential-never-plain", "action": "hold", "from": "juergen@example.org", "calendar_exempt": false}},
		{"confidential meeting request, certificate: still S/MIME", []string{"--message", meeting, "--to", "carol@partner.test"},
			map[string]any{"rule": "confidential-never-plain", "method": "smime", "action": "deliver"}},
		{"flags override the message", []string{"--message", meeting, "--to", "carol@partner.test", "--header", "X-Classification: Public", "--from", "alice@example.org"},
			map[string]any{"rule": "secure-subject", "method": "none", "calendar_exempt": true, "from": "alice@example.org", "subject": "Besprechung über den Vertrag"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := explainJSON(t, c.args...)
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
		})
	}

	plain, err := os.ReadFile("../../pkg/policy/testdata/plain.eml")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"--config", "../../config.example.toml", "-o", "json", "policy", "explain", "--message", "-", "--to", "dave@partner.test", "--subject", "[secure] x"},
		bytes.NewReader(plain), &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), `"method": "pdf"`) || !strings.Contains(out.String(), `"from": "alice@example.org"`) {
		t.Errorf("message on stdin: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
