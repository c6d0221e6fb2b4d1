package pki_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
)

// TestGroupMemberships reads every sender's groups from slapd: nested
// groups resolved through the eng ⇄ contractors cycle, aliases keyed too,
// and groups outside users.groups (others) included, since policy rules
// may name any group.
func TestGroupMemberships(t *testing.T) {
	ldif, _, aliases := directoryLDIF()
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: suffix, LDIF: ldif})
	d, err := pki.NewLDAPDirectory(pki.LDAPConfig{URL: slapd.URL, BindDN: slapd.RootDN, BindPassword: slapd.RootPW, AllowPlaintextBind: true,
		BaseDN: suffix, GroupBaseDN: "ou=groups," + suffix, Groups: []string{"sales"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.GroupMemberships(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	names := func(cns ...string) []string {
		var out []string
		for _, cn := range cns {
			out = append(out, cn, groupDN(cn))
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		email string
		want  []string
	}{
		{userMail(1), names("sales")},
		{userMail(5), names("sales")}, // disabled: still a member for policy
		{userMail(70), names("eng", "contractors")},
		{userMail(120), names("contractors", "eng")},
		{aliases[userMail(120)], names("contractors", "eng")},
		{userMail(145), names("board")},
		{userMail(160), names("others")},
		{userMail(195), nil},
		{"nobody@example.test", nil},
	} {
		if g := got[tc.email]; !slices.Equal(g, tc.want) {
			t.Errorf("%s: groups %v, want %v", tc.email, g, tc.want)
		}
	}

	slapd.Stop()
	if _, err := d.GroupMemberships(context.Background()); err == nil {
		t.Fatal("no error with the directory down")
	}
}
