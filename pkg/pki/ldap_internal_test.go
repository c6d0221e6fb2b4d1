package pki

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// On AD the server resolves nested groups; the filter must say so with the
// in-chain rule, escape DNs, keep to user accounts (no contacts) and drop disabled
// accounts. (slapd knows no
// in-chain rule, so this path is checked for shape here and compiles with
// go-ldap's filter parser.)
func TestADMembersFilter(t *testing.T) {
	for _, tc := range []struct {
		groups []string
		want   string
	}{
		{[]string{"CN=S/MIME Users,OU=Groups,DC=corp,DC=example"},
			"(&(objectClass=user)(sAMAccountType=805306368)(|(memberOf:1.2.840.113556.1.4.1941:=CN=S/MIME Users,OU=Groups,DC=corp,DC=example))(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"},
		{[]string{"CN=a(1),DC=x", "CN=b*,DC=x"},
			`(&(objectClass=user)(sAMAccountType=805306368)(|(memberOf:1.2.840.113556.1.4.1941:=CN=a\281\29,DC=x)(memberOf:1.2.840.113556.1.4.1941:=CN=b\2a,DC=x))(!(userAccountControl:1.2.840.113556.1.4.803:=2)))`},
	} {
		got := adMembersFilter("(objectClass=user)", tc.groups)
		if got != tc.want {
			t.Errorf("groups %v:\n got %s\nwant %s", tc.groups, got, tc.want)
		}
		if _, err := ldap.CompileFilter(got); err != nil {
			t.Errorf("filter %s does not compile: %v", got, err)
		}
	}
}
