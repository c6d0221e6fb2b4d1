package testpeer

import (
	"strings"
	"testing"
	"time"
)

const slapdTestLDIF = `dn: ou=people,dc=example,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=test
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: adUser
uid: alice
cn: Alice Example
sn: Example
mail: alice@example.test
proxyAddresses: SMTP:alice@example.test
proxyAddresses: smtp:a.example@example.test
sAMAccountName: alice
userPrincipalName: alice@example.test
userAccountControl: 512

dn: uid=bob,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: adUser
uid: bob
cn: Bob Example
sn: Example
mail: bob@example.test
sAMAccountName: bob
userAccountControl: 514

dn: cn=smime-users,ou=groups,dc=example,dc=test
objectClass: groupOfNames
cn: smime-users
member: uid=alice,ou=people,dc=example,dc=test
`

func TestSlapdMemberOfAndADSchema(t *testing.T) {
	s := StartSlapd(t, SlapdOptions{Suffix: "dc=example,dc=test", LDIF: slapdTestLDIF})

	out := s.Search(t, "", "(uid=alice)", "memberOf")
	if !strings.Contains(out, "memberOf: cn=smime-users,ou=groups,dc=example,dc=test") {
		t.Fatalf("alice has no memberOf from the overlay:\n%s", out)
	}
	// proxyAddresses matches case-insensitively, like AD.
	if out := s.Search(t, "", "(proxyAddresses=SMTP:A.EXAMPLE@example.test)", "uid"); !strings.Contains(out, "uid: alice") {
		t.Fatalf("proxyAddresses search did not find alice:\n%s", out)
	}
	// AD's bitwise rule: disabled accounts (bit 2) are bob only.
	out = s.Search(t, "", "(userAccountControl:1.2.840.113556.1.4.803:=2)", "uid")
	if !strings.Contains(out, "uid: bob") || strings.Contains(out, "uid: alice") {
		t.Fatalf("disabled-account filter: want only bob, got:\n%s", out)
	}

	// Changes during the test reach the overlay too.
	s.Apply(t, `dn: cn=smime-users,ou=groups,dc=example,dc=test
changetype: modify
add: member
member: uid=bob,ou=people,dc=example,dc=test
`)
	if out := s.Search(t, "", "(memberOf=cn=smime-users,ou=groups,dc=example,dc=test)", "uid"); !strings.Contains(out, "uid: bob") || !strings.Contains(out, "uid: alice") {
		t.Fatalf("after modify, want alice and bob in the group, got:\n%s", out)
	}
	// Deleting an entry removes it from groups (refint). groupOfNames needs
	// one member, so refint cannot empty a group: alice stays.
	s.Apply(t, "dn: uid=bob,ou=people,dc=example,dc=test\nchangetype: delete\n")
	// refint updates the groups in a background task: poll briefly.
	var members string
	for i := 0; i < 50; i++ {
		members = s.Search(t, "cn=smime-users,ou=groups,dc=example,dc=test", "(objectClass=*)", "member")
		if !strings.Contains(members, "uid=bob") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(members, "uid=bob") {
		t.Fatalf("refint did not remove the deleted member:\n%s", members)
	}

	// Stop, then Restart on the same port with the same data.
	s.Stop()
	if dialOK(s.Addr) {
		t.Fatalf("slapd still listening after Stop")
	}
	s.Restart(t)
	if out := s.Search(t, "", "(uid=alice)", "mail"); !strings.Contains(out, "mail: alice@example.test") {
		t.Fatalf("data lost across restart:\n%s", out)
	}
}
