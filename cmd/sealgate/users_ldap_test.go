package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
)

const usersLDAPSuffix = "dc=example,dc=test"

// usersLDAPDirectory starts slapd with people ann, ben, cid, dee and the
// groups: smime-users ∋ staff ∋ ann (nested), smime-users ∋ ben;
// legal ∋ legal-team ∋ cid (nested); dee is in no group. It returns a
// config file using it, with a sender_group rule before the default.
func usersLDAPDirectory(t *testing.T) (*testpeer.Slapd, string) {
	t.Helper()
	s := usersLDAPSuffix
	ldif := "dn: ou=people," + s + "\nobjectClass: organizationalUnit\nou: people\n\n" +
		"dn: ou=groups," + s + "\nobjectClass: organizationalUnit\nou: groups\n\n"
	for _, u := range []string{"ann", "ben", "cid", "dee"} {
		ldif += fmt.Sprintf("dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nmail: %s@example.test\n\n", u, s, u, u, u, u)
	}
	group := func(cn string, members ...string) string {
		g := fmt.Sprintf("dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\ncn: %s\n", cn, s, cn)
		for _, m := range members {
			g += "member: " + m + "\n"
		}
		return g + "\n"
	}
	ldif += group("staff", "uid=ann,ou=people,"+s)
	ldif += group("smime-users", "cn=staff,ou=groups,"+s, "uid=ben,ou=people,"+s)
	ldif += group("legal-team", "uid=cid,ou=people,"+s)
	ldif += group("legal", "cn=legal-team,ou=groups,"+s)
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: s, LDIF: ldif})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bind.pw"), []byte(slapd.RootPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sealgate.toml")
	// data_dir absolute: serve resolves a relative one against the working
	// directory, the pki commands against the config file's.
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`data_dir = %q
[smtp]
listen = "127.0.0.1:0"
hostname = "gw.example.test"
[relay]
mode = "dir"
dir = "outbox"
[pki]
key_type = "p256"
[users]
source = "ldap"
groups = ["smime-users"]
[users.ldap]
url = %q
bind_dn = %q
bind_password_file = "bind.pw"
base_dn = %q
# slapd on loopback, no TLS
allow_plaintext_bind = true
timeout = "5s"
[policy]
internal_domains = ["example.test"]
[[policy.rules]]
name = "legal-never-plain"
sender_group = ["legal"]
sign = "always"
encrypt = "smime-required"
on_failure = "hold"
[[policy.rules]]
name = "default"
sign = "always"
encrypt = "smime"
on_failure = "hold"
`, filepath.Join(dir, "data"), slapd.URL, slapd.RootDN, s)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return slapd, cfg
}

// TestPolicyExplainLDAPSenderGroups: policy explain reads the sender's
// groups from slapd, nested groups resolved, and picks the sender_group
// rule for a member only.
func TestPolicyExplainLDAPSenderGroups(t *testing.T) {
	testpeer.Require(t, "slapd")
	_, cfg := usersLDAPDirectory(t)
	withCertificates(t)
	for _, tc := range []struct {
		from, rule string
		groups     []string
	}{
		{"cid@example.test", "legal-never-plain", []string{"legal", "legal-team"}},
		{"CID@example.test", "legal-never-plain", []string{"legal", "legal-team"}},
		{"ann@example.test", "default", []string{"smime-users", "staff"}},
		{"dee@example.test", "default", nil},
		{"stranger@example.test", "default", nil},
	} {
		t.Run(tc.from, func(t *testing.T) {
			out := mustSG(t, cfg, "-o", "json", "policy", "explain", "--from", tc.from, "--to", "x@partner.test")
			var res map[string]any
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if res["rule"] != tc.rule {
				t.Errorf("rule = %v, want %s\n%s", res["rule"], tc.rule, out)
			}
			var names []string
			for _, g := range res["sender_groups"].([]any) {
				if s := g.(string); !strings.Contains(s, "=") { // the DNs are listed too
					names = append(names, s)
				}
			}
			if !slices.Equal(names, tc.groups) {
				t.Errorf("groups = %v, want %v", res["sender_groups"], tc.groups)
			}
			if src, _ := res["sender_groups_source"].(string); !strings.HasPrefix(src, "users.ldap ") {
				t.Errorf("groups_source = %q", src)
			}
		})
	}
}

// TestServePipelineLDAPUsers wires the pipeline as serve does from an
// ldap config: a nested member of users.groups gets a certificate on
// demand and their mail leaves signed (openssl verifies it); a member of
// the legal group is held (no recipient certificate, smime-required); with
// the directory down and nothing cached, a message a sender_group rule
// might concern is held, not sent under the default rule.
func TestServePipelineLDAPUsers(t *testing.T) {
	testpeer.Require(t, "slapd")
	testpeer.Require(t, "openssl")
	slapd, cfgFile := usersLDAPDirectory(t)
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	logs := &syncBuffer{b: &bytes.Buffer{}}
	rt, ca, mgr, pipeline := servePieces(t, ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	msg := func(from string) []byte {
		return []byte("From: " + from + "\r\nTo: x@partner.test\r\nSubject: hello\r\nMessage-ID: <1@example.test>\r\n\r\nbody\r\n")
	}
	process := func(p *gateway.Pipeline, from string) *gateway.Plan {
		t.Helper()
		plan, err := p.Process(ctx, &gateway.Envelope{ID: "t", From: from}, []string{"x@partner.test"}, msg(from))
		if err != nil {
			t.Fatalf("process %s: %v", from, err)
		}
		return plan
	}

	plan := process(pipeline, "ann@example.test")
	if len(plan.Parcels) != 1 || !plan.Parcels[0].Signed || plan.Parcels[0].Rule != "default" {
		t.Fatalf("ann: %+v\n%s", plan, logs.String())
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root().Raw}), 0o644)
	in := filepath.Join(dir, "ann.eml")
	os.WriteFile(in, plan.Parcels[0].Data, 0o644)
	r := testpeer.Run(t, nil, "openssl", "cms", "-verify", "-in", in, "-CAfile", root, "-purpose", "smimesign", "-signer", filepath.Join(dir, "signer.pem"))
	if r.ExitCode != 0 {
		t.Fatalf("openssl rejects the signature: %s", r.Stderr)
	}
	if r := testpeer.Run(t, nil, "openssl", "x509", "-in", filepath.Join(dir, "signer.pem"), "-noout", "-ext", "subjectAltName"); !strings.Contains(string(r.Stdout), "ann@example.test") {
		t.Fatalf("signer is not ann: %s", r.Stdout)
	}

	// The signer caches ann's current certificate for currentTTL and her
	// unsealed key per certificate serial: after a renewal by another
	// process the old (still valid) certificate may sign until the TTL is
	// up, then the new one does.
	signer := pipeline.Signer.(*pkiSigner)
	clock := time.Now()
	signer.now = func() time.Time { return clock }
	process(pipeline, "ann@example.test") // fills the cache
	old, err := mgr.Current(ctx, "ann@example.test")
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := mgr.RenewUser(ctx, "ann@example.test")
	if err != nil {
		t.Fatal(err)
	}
	plan = process(pipeline, "ann@example.test")
	os.WriteFile(in, plan.Parcels[0].Data, 0o644)
	if r := testpeer.Run(t, nil, "openssl", "cms", "-verify", "-in", in, "-CAfile", root, "-purpose", "smimesign", "-signer", filepath.Join(dir, "signer1.pem")); r.ExitCode != 0 {
		t.Fatalf("openssl rejects the signature right after renewal: %s", r.Stderr)
	}
	signer1, _ := os.ReadFile(filepath.Join(dir, "signer1.pem"))
	if b, _ := pem.Decode(signer1); b == nil || !bytes.Equal(b.Bytes, old.DER) {
		t.Fatalf("within the TTL the message is not signed with the cached certificate %s", old.Serial)
	}
	clock = clock.Add(currentTTL)
	plan = process(pipeline, "ann@example.test")
	os.WriteFile(in, plan.Parcels[0].Data, 0o644)
	if r := testpeer.Run(t, nil, "openssl", "cms", "-verify", "-in", in, "-CAfile", root, "-purpose", "smimesign", "-signer", filepath.Join(dir, "signer2.pem")); r.ExitCode != 0 {
		t.Fatalf("openssl rejects the signature after renewal: %s", r.Stderr)
	}
	signer2, _ := os.ReadFile(filepath.Join(dir, "signer2.pem"))
	if b, _ := pem.Decode(signer2); b == nil || !bytes.Equal(b.Bytes, renewed.DER) {
		t.Fatalf("after renewal the message is not signed with the new certificate (serial %s)", renewed.Serial)
	}

	// dee is not in users.groups: no certificate, and sign = "always" holds.
	if plan := process(pipeline, "dee@example.test"); len(plan.Parcels) != 0 || !strings.Contains(plan.Held["x@partner.test"], "not a known user") {
		t.Fatalf("dee (not in users.groups) must not be signed for: %+v", plan)
	}
	if plan := process(pipeline, "cid@example.test"); len(plan.Parcels) != 0 || !strings.Contains(plan.Held["x@partner.test"], "legal-never-plain") {
		t.Fatalf("cid (legal, nested) must be held: %+v", plan)
	}

	// Directory down, nothing cached: a fresh pipeline (as after a restart).
	slapd.Stop()
	rt2 := *rt
	rt2.closers = nil
	_, _, err = openPKI(ctx, &rt2)
	defer rt2.Close()
	if err != nil {
		t.Fatal(err)
	}
	down, err := buildPipeline(cfg, &rt2, mgr)
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"ann@example.test", "cid@example.test"} {
		plan := process(down, from)
		if len(plan.Parcels) != 0 || !strings.Contains(plan.Held["x@partner.test"], "sender groups unknown") {
			t.Fatalf("%s with the directory down: want held, got %+v", from, plan)
		}
	}
	// The already-built pipeline keeps its last good read.
	if plan := process(pipeline, "cid@example.test"); !strings.Contains(plan.Held["x@partner.test"], "legal-never-plain") {
		t.Fatalf("cached groups not used: %+v", plan)
	}
}
