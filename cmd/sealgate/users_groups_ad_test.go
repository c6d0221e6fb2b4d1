package main

import (
	"context"
	"fmt"
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

// TestSenderGroupsActiveDirectory: serve's sender_group lookup, wired
// from a config file as serve wires it (newUserSource, directoryGroups,
// policyDecider), against a real Samba AD DC over LDAPS: membership
// through a nested group, by alias too, decides the rule.
func TestSenderGroupsActiveDirectory(t *testing.T) {
	ad := testpeer.StartSambaAD(t)
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
