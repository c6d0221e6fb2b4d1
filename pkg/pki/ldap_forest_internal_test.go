package pki

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

func forestConfig(domains ...LDAPDomain) LDAPConfig {
	return LDAPConfig{URL: "ldaps://dc1.example.org:636", BaseDN: "DC=example,DC=org", BindDN: "CN=svc,DC=example,DC=org",
		BindPassword: "s3cret-bind-pw", Groups: []string{"smime"}, GlobalCatalog: "ldaps://gc.example.org:3269", Domains: domains}
}

// TestForestDomainOf: a member is read from the domain whose base DN is
// the longest suffix of its DN on RDN boundaries; a DN in no configured
// domain is an error naming the DN and the entry to add.
func TestForestDomainOf(t *testing.T) {
	d, err := NewLDAPDirectory(forestConfig(
		LDAPDomain{BaseDN: "DC=emea,DC=example,DC=org", URL: "ldaps://dc1.emea.example.org"},
		LDAPDomain{BaseDN: "dc=Partner,dc=test", URL: "ldaps://dc.partner.test"},
	))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tc := range []struct {
		name, dn string
		want     string // URL of the directory, "" for an error
		wantErr  string
	}{
		{"home domain", "CN=Alice,OU=People,DC=example,DC=org", "ldaps://dc1.example.org:636", ""},
		{"child domain under the home domain's DN", "CN=Bob,OU=People,DC=emea,DC=example,DC=org", "ldaps://dc1.emea.example.org", ""},
		{"case and spacing differ", "cn=Carol, ou=x, dc=EMEA, dc=Example, dc=ORG", "ldaps://dc1.emea.example.org", ""},
		{"other tree of the forest", "CN=Dave,DC=partner,DC=test", "ldaps://dc.partner.test", ""},
		{"suffix only as a string, not on an RDN boundary", "CN=Eve,DC=badexample,DC=org", "", `base_dn = "DC=badexample,DC=org"`},
		{"unconfigured child domain", "CN=Frank,OU=Staff,DC=apac,DC=example,DC=org", "", "lies in no configured domain"},
		{"unconfigured domain names the DN and the entry", "CN=Gina,OU=Staff,DC=asia,DC=corp", "", `CN=Gina,OU=Staff,DC=asia,DC=corp lies in no configured domain: add [[users.ldap.domains]] with base_dn = "DC=asia,DC=corp"`},
		{"escaped comma does not split an RDN", `CN=x\,DC=example\,DC=org,DC=evil`, "", "no configured domain"},
		{"not a DN", "garbage", "", "no configured domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := d.forest.domainOf(d, tc.dn)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("domainOf(%q) = %v, %v; want an error saying %q", tc.dn, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.cfg.URL != tc.want {
				t.Fatalf("domainOf(%q) = %s, want %s", tc.dn, got.cfg.URL, tc.want)
			}
		})
	}
}

// TestForestConfig: the GC and each domain connection follow the same
// transport rules as users.ldap.url; domains without a GC, duplicate or
// malformed base DNs are refused, naming the key.
func TestForestConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*LDAPConfig)
		want   string // "" accepted
	}{
		{"ldaps GC and domain", func(*LDAPConfig) {}, ""},
		{"GC on 3268 with StartTLS", func(c *LDAPConfig) {
			c.URL, c.StartTLS, c.GlobalCatalog = "ldap://dc1.example.org:389", true, "ldap://gc.example.org:3268"
		}, ""},
		{"ldap GC without StartTLS", func(c *LDAPConfig) { c.GlobalCatalog = "ldap://gc.example.org:3268" }, "users.ldap.global_catalog"},
		{"ldap GC allowed explicitly", func(c *LDAPConfig) {
			c.GlobalCatalog, c.AllowPlaintextBind = "ldap://127.0.0.1:3268", true
		}, ""},
		{"ldap domain without StartTLS", func(c *LDAPConfig) { c.Domains[0].URL = "ldap://dc.emea.example.org" }, "users.ldap.domains[0].url"},
		{"GC not an LDAP URL", func(c *LDAPConfig) { c.GlobalCatalog = "https://gc.example.org" }, "not an ldap:// or ldaps:// URL"},
		{"domains without GC", func(c *LDAPConfig) { c.GlobalCatalog = "" }, "users.ldap.global_catalog is not"},
		{"domain twice", func(c *LDAPConfig) {
			c.Domains = append(c.Domains, LDAPDomain{BaseDN: "dc=EMEA,dc=example,dc=org", URL: "ldaps://dc2.emea.example.org"})
		}, "users.ldap.domains[1].base_dn"},
		{"domain is the home domain", func(c *LDAPConfig) { c.Domains[0].BaseDN = "dc=example,dc=org" }, "is also users.ldap.base_dn"},
		{"domain base DN not a DN", func(c *LDAPConfig) { c.Domains[0].BaseDN = "emea.example.org" }, "users.ldap.domains[0].base_dn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := forestConfig(LDAPDomain{BaseDN: "DC=emea,DC=example,DC=org", URL: "ldaps://dc1.emea.example.org"})
			tc.change(&cfg)
			d, err := NewLDAPDirectory(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				d.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), cfg.BindPassword) {
				t.Fatalf("error reveals the bind password: %v", err)
			}
		})
	}
}

func TestFormatSID(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" for an error
	}{
		{"domain account", []byte{1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 0xc7, 0x35, 0x3a, 0x42, 0x8e, 0x6b, 0x74, 0x84, 0x55, 0xa1, 0xae, 0xc6, 0x50, 0x04, 0, 0},
			"S-1-5-21-1111111111-2222222222-3333333333-1104"},
		{"well-known Authenticated Users", []byte{1, 1, 0, 0, 0, 0, 0, 5, 11, 0, 0, 0}, "S-1-5-11"},
		{"empty", nil, ""},
		{"short", []byte{1, 1, 0, 0}, ""},
		{"count says more than there is", []byte{1, 2, 0, 0, 0, 0, 0, 5, 11, 0, 0, 0}, ""},
		{"trailing bytes", []byte{1, 1, 0, 0, 0, 0, 0, 5, 11, 0, 0, 0, 0}, ""},
		{"wrong revision", []byte{2, 1, 0, 0, 0, 0, 0, 5, 11, 0, 0, 0}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := formatSID(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("formatSID(%x) = %q, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("formatSID(%x) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// FuzzFormatSID: whatever objectSid the GC sends, what reaches the log
// is a SID in its textual form or nothing.
func FuzzFormatSID(f *testing.F) {
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 5, 11, 0, 0, 0})
	f.Add([]byte{1, 15})
	sid := regexp.MustCompile(`^S-1-[0-9]+(-[0-9]+)*$`)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := formatSID(b)
		if err == nil && !sid.MatchString(s) {
			t.Fatalf("formatSID(%x) = %q", b, s)
		}
	})
}

// TestForestDomainBaseMustExist: a domain whose url points at a server
// that does not hold its base DN (a DC of another domain, a typo) is an
// error, not a domain whose members were all deleted: without the check
// every member would be left out and revoked.
func TestForestDomainBaseMustExist(t *testing.T) {
	other := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: "dc=other,dc=test"})
	const member = "CN=Bob,OU=Branch,DC=example,DC=test"
	for _, tc := range []struct {
		name, base string
		wantErr    string
	}{
		{"base DN the server holds, member absent: left out", "dc=other,dc=test", ""},
		{"base DN the server does not hold", "OU=Branch,DC=example,DC=test", "reading its base DN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDirectory(LDAPConfig{URL: other.URL, BaseDN: tc.base, UserFilter: "(objectClass=person)", Timeout: 5 * time.Second})
			defer d.Close()
			users, err := d.readMembers(context.Background(), []string{member}, time.Now())
			if tc.wantErr == "" {
				if err != nil || len(users) != 0 {
					t.Fatalf("users %v, error %v; want none and no error", users, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("users %v, error %v; want an error saying %q", users, err, tc.wantErr)
			}
		})
	}
}
