package testpeer

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestSambaAD: the DC answers LDAPS with the test CA, refuses simple
// binds in clear text like a real DC, resolves nested groups with
// LDAP_MATCHING_RULE_IN_CHAIN, and holds the cross-process lock.
func TestSambaAD(t *testing.T) {
	ad := StartSambaAD(t)
	ou := "OU=People," + ad.BaseDN
	ad.Apply(t, "dn: "+ou+"\nobjectClass: organizationalUnit\n\n"+
		UserLDIF(ADUser{DN: "CN=Alice," + ou, SAMAccountName: "alice", Mail: "alice@example.test",
			ProxyAddresses: []string{"SMTP:alice@example.test", "smtp:a.example@example.test"}})+
		UserLDIF(ADUser{DN: "CN=Bob," + ou, SAMAccountName: "bob", Mail: "bob@example.test", Disabled: true})+
		GroupLDIF("CN=Inner,"+ou, "inner", "CN=Bob,"+ou)+
		GroupLDIF("CN=Outer,"+ou, "outer", "CN=Inner,"+ou, "CN=Alice,"+ou))

	for _, tc := range []struct {
		name, filter  string
		want, notWant []string
	}{
		{"in chain reaches the nested member", "(memberOf:1.2.840.113556.1.4.1941:=CN=Outer," + ou + ")",
			[]string{"CN=Alice,", "CN=Bob,", "CN=Inner,"}, nil},
		{"plain memberOf is direct only", "(memberOf=CN=Outer," + ou + ")",
			[]string{"CN=Alice,", "CN=Inner,"}, []string{"CN=Bob,"}},
		{"bitwise AND finds the disabled account", "(userAccountControl:1.2.840.113556.1.4.803:=2)",
			[]string{"CN=Bob,"}, []string{"CN=Alice,"}},
		{"proxyAddresses match case-insensitively", "(proxyAddresses=smtp:alice@example.test)",
			[]string{"CN=Alice,"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := ad.Search(t, ou, tc.filter, "dn")
			for _, w := range tc.want {
				if !strings.Contains(out, "dn: "+w) {
					t.Errorf("%s: %s missing from\n%s", tc.filter, w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, "dn: "+w) {
					t.Errorf("%s: %s unexpected in\n%s", tc.filter, w, out)
				}
			}
		})
	}

	t.Run("simple bind without TLS refused", func(t *testing.T) {
		res := Run(t, nil, "ldapsearch", "-x", "-H", ad.URL, "-D", ad.AdminDN, "-y", ad.pwFile, "-b", "", "-s", "base", "dn")
		if res.ExitCode == 0 || !strings.Contains(string(res.Stderr), "Strong") {
			t.Fatalf("clear-text simple bind: exit %d %s", res.ExitCode, res.Stderr)
		}
	})

	t.Run("lock held", func(t *testing.T) {
		f, err := os.Open(sambaLockFile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
			t.Fatalf("second lock while the DC runs: %v, want EWOULDBLOCK", err)
		}
	})
}
