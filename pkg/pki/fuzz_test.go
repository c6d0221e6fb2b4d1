package pki

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// FuzzUserFromEntry feeds directory attribute values (outside input) to
// the LDAP user mapping: it must never panic, and whatever it accepts must
// be plain lower-case addresses with the primary not repeated as an alias.
func FuzzUserFromEntry(f *testing.F) {
	f.Add("Alice@Example.org", "SMTP:alice@example.org", "smtp:a@example.org", "Alice")
	f.Add("", "SMTP:bob@example.org", "X500:/o=x/cn=bob", "")
	f.Add("not an address", "smtp:", "sip:x@y", "cn")
	f.Add("a@b", "smtp:\"quoted\"@b", "SMTP:<c@d>", "x")
	f.Fuzz(func(t *testing.T, mail, p1, p2, name string) {
		e := ldap.NewEntry("uid=x,dc=example,dc=test", map[string][]string{
			"mail": {mail}, "proxyAddresses": {p1, p2}, "cn": {name},
		})
		u, ok := userFromEntry(e)
		if !ok {
			return
		}
		for _, a := range u.Addresses() {
			if a != strings.ToLower(a) || !strings.Contains(a, "@") || strings.ContainsAny(a, " <>\"") {
				t.Fatalf("accepted address %q", a)
			}
		}
		for _, a := range u.Aliases {
			if a == u.Email {
				t.Fatalf("primary %q repeated as alias", a)
			}
		}
	})
}

// FuzzNormDN checks DN normalisation (DNs come from the directory) is
// total and idempotent on what it produces.
func FuzzNormDN(f *testing.F) {
	f.Add("CN=Sales, OU=Groups,DC=Example,DC=test")
	f.Add("uid=a\\,b,dc=x")
	f.Add("=,=")
	f.Fuzz(func(t *testing.T, dn string) {
		n := normDN(dn)
		if _, err := ldap.ParseDN(dn); err == nil && normDN(n) != n {
			t.Fatalf("normDN not idempotent: %q -> %q -> %q", dn, n, normDN(n))
		}
	})
}
