package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/policy"
)

// TestActiveDirectoryCLI runs the commands against a real Samba AD DC
// (one for both subtests), configured from a file as an admin does.
func TestActiveDirectoryCLI(t *testing.T) {
	ad := testpeer.StartSambaAD(t)
	ad.ExtendSchemaExchange(t)
	t.Run("sender groups", func(t *testing.T) { adSenderGroups(t, ad) })
	t.Run("pki rollout", func(t *testing.T) { adPKIRollout(t, ad) })
	t.Run("pki rollout through the global catalog", func(t *testing.T) { adForestRollout(t, ad) })
}

// adForestRollout: users.ldap.global_catalog and [[users.ldap.domains]]
// from a config file. Home is OU=Home, the "other domain" OU=Away (the
// same DC serves both: Samba holds one domain only); the group nests a
// group holding Ida from OU=Away. With the domain listed, both get
// certificates; without it the rollout stops with an error naming Ida's
// DN and the entry to add, and nobody's certificate is revoked.
func adForestRollout(t *testing.T, ad *testpeer.SambaAD) {
	home, away := "OU=Home,"+ad.BaseDN, "OU=Away,"+ad.BaseDN
	ad.Apply(t, fmt.Sprintf("dn: %s\nobjectClass: organizationalUnit\n\ndn: %s\nobjectClass: organizationalUnit\n\n", home, away)+
		testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Hal," + home, SAMAccountName: "hal", Mail: "hal@example.test"})+
		testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Ida," + away, SAMAccountName: "ida", Mail: "ida@example.test"})+
		testpeer.GroupLDIF("CN=Away Team,"+away, "away-team", "CN=Ida,"+away)+
		testpeer.GroupLDIF("CN=Forest Signers,"+home, "forest-signers", "CN=Hal,"+home, "CN=Away Team,"+away))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bind.pw"), []byte(ad.AdminPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf(`data_dir = "./data"
[relay]
mode = "dir"
dir = "./data/outbox"
[pki]
key_type = "p256"
[users]
source = "ldap"
groups = ["Forest Signers"]
[users.ldap]
url = %q
bind_dn = %q
bind_password_file = "bind.pw"
base_dn = %q
ca_file = %q
global_catalog = "ldaps://127.0.0.1:3269"
[[policy.rules]]
name = "sign only"
sign = "always"
encrypt = "none"
`, ad.LDAPSURL, ad.AdminDN, home, ad.CAFile)
	withDomain := filepath.Join(dir, "forest.toml")
	homeOnly := filepath.Join(dir, "home-only.toml")
	if err := os.WriteFile(withDomain, []byte(base+fmt.Sprintf("[[users.ldap.domains]]\nbase_dn = %q\nurl = %q\n", away, ad.LDAPSURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(homeOnly, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	mustSG(t, withDomain, "config", "check")
	mustSG(t, withDomain, "pki", "init")
	var res map[string]any
	if err := json.Unmarshal([]byte(mustSG(t, withDomain, "-o", "json", "pki", "rollout")), &res); err != nil {
		t.Fatal(err)
	}
	if res["issued"].(float64) != 2 || res["failed"].(float64) != 0 {
		t.Fatalf("rollout (hal directly, ida from the other domain through Away Team): %v", res)
	}
	active := func(cfg string) []string {
		var out []string
		for _, s := range sgJSON[[]statusJSON](t, cfg, "pki", "status") {
			if s.State == "active" {
				out = append(out, s.Email)
			}
		}
		slices.Sort(out)
		return out
	}
	want := []string{"hal@example.test", "ida@example.test"}
	if got := active(withDomain); !slices.Equal(got, want) {
		t.Fatalf("active after the rollout: %v, want %v", got, want)
	}
	code, out, errs := sg(t, homeOnly, "pki", "rollout")
	if code == 0 || !strings.Contains(errs, "CN=Ida,OU=Away,DC=example,DC=test lies in no configured domain") ||
		!strings.Contains(errs, "[[users.ldap.domains]]") {
		t.Fatalf("rollout without the domain: exit %d\n%s%s", code, out, errs)
	}
	if got := active(homeOnly); !slices.Equal(got, want) {
		t.Fatalf("active after the refused rollout: %v, want %v (nobody revoked)", got, want)
	}
}

// adSenderGroups: serve's sender_group lookup, wired from a config file as
// serve wires it (newUserSource, directoryGroups, policyDecider), over
// LDAPS: membership through a nested group, by alias too, decides the
// rule.
func adSenderGroups(t *testing.T, ad *testpeer.SambaAD) {
	people, groups := "OU=People,"+ad.BaseDN, "OU=Groups,"+ad.BaseDN
	user := func(cn, mail string, proxy ...string) string {
		return testpeer.UserLDIF(testpeer.ADUser{DN: "CN=" + cn + "," + people, SAMAccountName: strings.ToLower(cn), Mail: mail, ProxyAddresses: proxy})
	}
	ad.Apply(t, fmt.Sprintf("dn: %s\nobjectClass: organizationalUnit\n\ndn: %s\nobjectClass: organizationalUnit\n\n", people, groups)+
		user("Cid", "cid@example.org", "SMTP:cid@example.org", "smtp:counsel@example.org")+
		user("Dee", "dee@example.org")+
		user("Eve", "eve@example.org")+
		testpeer.GroupLDIF("CN=Litigation,"+groups, "litigation", "CN=Cid,"+people)+
		testpeer.GroupLDIF("CN=Legal,"+groups, "legal", "CN=Litigation,"+groups, "CN=Dee,"+people)+
		testpeer.GroupLDIF("CN=S/MIME Users,"+groups, "smime-users", "CN=Eve,"+people))
	// Reading groups needs no rights beyond an ordinary account's.
	reader := "CN=svc-reader,CN=Users," + ad.BaseDN
	ad.Apply(t, testpeer.UserLDIF(testpeer.ADUser{DN: reader, SAMAccountName: "svc-reader"}))

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "bindpw")
	if err := os.WriteFile(pwFile, []byte(testpeer.SambaUserPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sealgate.toml")
	toml := fmt.Sprintf(`data_dir = "./data"
[relay]
mode = "dir"
dir = "out"
[users]
source = "ldap"
groups = ["S/MIME Users"]
[users.ldap]
url = %q
bind_dn = %q
bind_password_file = %q
base_dn = %q
ca_file = %q
[policy]
internal_domains = ["example.org"]
[[policy.rules]]
name = "legal"
sender_group = ["legal"]
encrypt = "smime-required"
[[policy.rules]]
name = "default"
encrypt = "smime"
`, ad.LDAPSURL, reader, pwFile, ad.BaseDN, ad.CAFile)
	if err := os.WriteFile(conf, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	_, ldapDir, err := newUserSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ldapDir.Close()
	pol, err := policy.FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := newDirectoryGroups(ldapDir.GroupMemberships, nil)
	decider := policyDecider{p: pol, groups: g}
	ctx := context.Background()

	for _, tc := range []struct {
		name, sender string
		inLegal      bool
		action       gateway.Action
		rule         string
	}{
		{"member through a nested group", "cid@example.org", true, gateway.ActionHold, "legal"}, // smime-required, no certificate
		{"same sender by alias", "Counsel@example.org", true, gateway.ActionHold, "legal"},
		{"direct member", "dee@example.org", true, gateway.ActionHold, "legal"},
		{"member of another group only", "eve@example.org", false, gateway.ActionDeliver, "default"},
		{"not in the directory", "zed@example.org", false, gateway.ActionDeliver, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := g.SenderGroups(ctx, tc.sender)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(got, "Legal") != tc.inLegal {
				t.Fatalf("groups of %s: %v, in Legal want %v", tc.sender, got, tc.inLegal)
			}
			d := decider.Decide(ctx, &gateway.MessageFacts{Sender: tc.sender, Subject: "s"}, "a@partner.test", false)
			if d.Action != tc.action || !strings.HasPrefix(d.Rule, tc.rule) {
				t.Fatalf("decision %v rule %q, want %v %q", d.Action, d.Rule, tc.action, tc.rule)
			}
		})
	}
}

// adPKIRollout: pki init + pki rollout with users.source = "ldap" on AD:
// LDAPS with users.ldap.ca_file, a least-privilege service account,
// publish_certificates. The certificate read back from AD verifies
// against pki ca-cert for S/MIME signing; a second rollout is a no-op.
func adPKIRollout(t *testing.T, ad *testpeer.SambaAD) {
	testpeer.Require(t, "openssl")
	people := "OU=Staff," + ad.BaseDN
	ad.Apply(t, fmt.Sprintf("dn: %s\nobjectClass: organizationalUnit\n\n", people)+
		testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Ann," + people, SAMAccountName: "ann", Mail: "ann@example.test"})+
		testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Ben," + people, SAMAccountName: "ben", Mail: "ben@example.test",
			ProxyAddresses: []string{"SMTP:ben@example.test", "smtp:b.alias@example.test"}})+
		testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Cy," + people, SAMAccountName: "cy", Mail: "cy@example.test", Disabled: true})+
		// A shared mailbox: a disabled account Exchange marks as such.
		testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Claims," + people, SAMAccountName: "claims", Mail: "claims@example.test",
			Disabled: true, RecipientTypeDetails: testpeer.ExchangeSharedMailbox})+
		testpeer.GroupLDIF("CN=Crew,"+people, "crew", "CN=Ben,"+people, "CN=Cy,"+people, "CN=Claims,"+people)+
		testpeer.GroupLDIF("CN=Mail Signers,"+people, "mail-signers", "CN=Ann,"+people, "CN=Crew,"+people))
	svc := ad.AddCertPublisher(t, "svc-pki", true)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bind.pw"), []byte(testpeer.SambaUserPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`data_dir = "./data"
[relay]
mode = "dir"
dir = "./data/outbox"
[pki]
key_type = "p256"
[users]
source = "ldap"
groups = ["Mail Signers"]
[users.ldap]
url = %q
bind_dn = %q
bind_password_file = "bind.pw"
base_dn = %q
ca_file = %q
publish_certificates = true
[[policy.rules]]
name = "sign only"
sign = "always"
encrypt = "none"
`, ad.LDAPSURL, svc, ad.BaseDN, ad.CAFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	mustSG(t, cfg, "pki", "init")
	var res map[string]any
	if err := json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "pki", "rollout")), &res); err != nil {
		t.Fatal(err)
	}
	if res["issued"].(float64) != 3 || res["published"].(float64) != 3 || res["failed"].(float64) != 0 {
		t.Fatalf("rollout (ann, and ben and the shared mailbox claims through Crew; cy disabled): %v", res)
	}
	kinds := map[string]string{}
	for _, s := range sgJSON[[]statusJSON](t, cfg, "pki", "status") {
		kinds[s.Email] = s.Kind
	}
	if kinds["ann@example.test"] != "user" || kinds["ben@example.test"] != "user" || kinds["claims@example.test"] != "shared" || len(kinds) != 3 {
		t.Fatalf("pki status kinds: %v", kinds)
	}
	var ben string
	for _, line := range strings.Split(ad.Search(t, "CN=Ben,"+people, "(objectClass=*)", "userCertificate"), "\n") {
		if v, ok := strings.CutPrefix(line, "userCertificate:: "); ok {
			ben = v
		}
	}
	der, err := base64.StdEncoding.DecodeString(ben)
	if err != nil || len(der) == 0 {
		t.Fatalf("ben's userCertificate in AD: %q %v", ben, err)
	}
	benFile := filepath.Join(dir, "ben.pem")
	chain := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(benFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(chain, []byte(mustSG(t, cfg, "pki", "ca-cert")), 0o644); err != nil {
		t.Fatal(err)
	}
	testpeer.MustRun(t, nil, "openssl", "verify", "-CAfile", chain, "-purpose", "smimesign", benFile)
	if out := testpeer.MustRun(t, nil, "openssl", "x509", "-in", benFile, "-noout", "-ext", "subjectAltName"); !strings.Contains(string(out), "b.alias@example.test") {
		t.Fatalf("ben's certificate lacks the proxyAddresses alias:\n%s", out)
	}
	if out := ad.Search(t, "CN=Cy,"+people, "(objectClass=*)", "userCertificate"); strings.Contains(out, "userCertificate") {
		t.Fatalf("disabled cy got a certificate:\n%s", out)
	}
	if err := json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "pki", "rollout")), &res); err != nil {
		t.Fatal(err)
	}
	if res["unchanged"].(float64) != 3 || res["published"].(float64) != 0 || res["issued"].(float64) != 0 {
		t.Fatalf("second rollout: %v", res)
	}
	adSendAsSharedMailbox(t, cfg, chain)
}

// adSendAsSharedMailbox: mail From the shared mailbox with Sender a
// person (Outlook's "send on behalf") leaves signed with the mailbox's
// certificate when Exchange's relay account submits it; a personal
// account of that person may not use the mailbox's address.
func adSendAsSharedMailbox(t *testing.T, cfgFile, chain string) {
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _, _, pipeline := servePieces(t, ctx, cfg, slog.New(slog.DiscardHandler))
	pipeline.Authorize = gateway.AuthorizeHeaderSenders(gateway.OwnsAddress(pipeline.Signer.(*pkiSigner).Owner))
	msg := []byte("From: Claims <claims@example.test>\r\nSender: Ann <ann@example.test>\r\nTo: x@partner.test\r\n" +
		"Subject: claim 4711\r\nMessage-ID: <shared@example.test>\r\n\r\nbody\r\n")
	env := &gateway.Envelope{ID: "s1", From: "ann@example.test", AuthUser: "exchange", AuthRole: gateway.RoleRelay}
	plan, err := pipeline.Process(ctx, env, []string{"x@partner.test"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Parcels) != 1 || !plan.Parcels[0].Signed {
		t.Fatalf("relay account, From the shared mailbox: %+v", plan)
	}
	dir := t.TempDir()
	in, signer := filepath.Join(dir, "shared.eml"), filepath.Join(dir, "signer.pem")
	if err := os.WriteFile(in, plan.Parcels[0].Data, 0o600); err != nil {
		t.Fatal(err)
	}
	testpeer.MustRun(t, nil, "openssl", "cms", "-verify", "-in", in, "-CAfile", chain, "-purpose", "smimesign", "-signer", signer, "-out", os.DevNull)
	if out := testpeer.MustRun(t, nil, "openssl", "x509", "-in", signer, "-noout", "-ext", "subjectAltName"); !strings.Contains(string(out), "claims@example.test") || strings.Contains(string(out), "ann@") {
		t.Fatalf("signed by %s, want the shared mailbox's certificate", out)
	}

	env = &gateway.Envelope{ID: "s2", From: "ann@example.test", AuthUser: "ann@example.test", AuthRole: gateway.RolePersonal}
	plan, err = pipeline.Process(ctx, env, []string{"x@partner.test"}, msg)
	if err == nil || !strings.Contains(err.Error(), "may send only as its own address") || plan != nil {
		t.Fatalf("ann's personal account sending as the shared mailbox: plan %+v, error %v; want the sender refused", plan, err)
	}
}
