package pki

import (
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/sealgate/sealgate/internal/testpeer"
)

// On AD the server resolves nested groups; the filter must say so with the
// in-chain rule, escape DNs and keep to user accounts (no contacts).
// Disabled accounts stay in: shared mailboxes are disabled accounts, and
// accountState judges them. (slapd knows no
// in-chain rule, so this path is checked for shape here and compiles with
// go-ldap's filter parser.)
func TestADMembersFilter(t *testing.T) {
	for _, tc := range []struct {
		groups []string
		want   string
	}{
		{[]string{"CN=S/MIME Users,OU=Groups,DC=corp,DC=example"},
			"(&(objectClass=user)(sAMAccountType=805306368)(|(memberOf:1.2.840.113556.1.4.1941:=CN=S/MIME Users,OU=Groups,DC=corp,DC=example)))"},
		{[]string{"CN=a(1),DC=x", "CN=b*,DC=x"},
			`(&(objectClass=user)(sAMAccountType=805306368)(|(memberOf:1.2.840.113556.1.4.1941:=CN=a\281\29,DC=x)(memberOf:1.2.840.113556.1.4.1941:=CN=b\2a,DC=x)))`},
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

// TestConnPoolExpiry: kept connections are reused while fresh, replaced
// once idle for ldapIdleTimeout, closed by the reaper, and never kept
// beyond ldapMaxIdle. Against slapd, so "closed" is a real connection.
func TestConnPoolExpiry(t *testing.T) {
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dials := 0
	p := &connPool{now: func() time.Time { return now }, dial: func() (*ldap.Conn, error) {
		dials++
		return ldap.DialURL(slapd.URL)
	}}
	defer p.close()
	get := func(wantReused bool) *ldap.Conn {
		t.Helper()
		c, reused, err := p.get()
		if err != nil {
			t.Fatal(err)
		}
		if reused != wantReused {
			t.Fatalf("reused = %v, want %v (dials %d)", reused, wantReused, dials)
		}
		return c
	}
	first := get(false)
	p.put(first)
	if c := get(true); c != first {
		t.Fatal("a fresh idle connection was not reused")
	}
	p.put(first)
	now = now.Add(ldapIdleTimeout)
	if c := get(false); c == first {
		t.Fatal("a connection idle for ldapIdleTimeout was reused")
	} else {
		p.put(c)
	}
	waitClosing(t, first)

	now = now.Add(ldapIdleTimeout)
	p.reap()
	if len(p.idle) != 0 {
		t.Fatalf("%d idle connections after reaping", len(p.idle))
	}

	var conns []*ldap.Conn
	for range ldapMaxIdle + 2 {
		conns = append(conns, get(false))
	}
	for _, c := range conns {
		p.put(c)
	}
	if len(p.idle) != ldapMaxIdle {
		t.Fatalf("%d idle connections kept, want at most %d", len(p.idle), ldapMaxIdle)
	}
	waitClosing(t, conns[len(conns)-1])
}

// waitClosing waits for the pool's asynchronous Close of c.
func waitClosing(t *testing.T, c *ldap.Conn) {
	t.Helper()
	for range 500 {
		if c.IsClosing() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("connection not closed")
}
