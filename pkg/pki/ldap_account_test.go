package pki

import (
	"cmp"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// TestAccountState: accountExpires in AD's epoch (100 ns since
// 1601-01-01 UTC) decides with userAccountControl whether an account may
// hold a certificate; 0 and MaxInt64 mean never, and anything AD would not
// write is an error naming the user and attribute, never "enabled".
func TestAccountState(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	// ticks of 2026-12-04 12:00:00 UTC: (Unix seconds + 11644473600) × 10^7.
	const nowTicks = "134408592000000000"
	for _, tc := range []struct {
		name     string
		attrs    map[string][]string
		inactive bool
		err      string // substring of the error; "" for none
		kind     string // "" for KindUser
	}{
		{"no account attributes (plain LDAP)", nil, false, "", ""},
		{"enabled, never expires (0)", map[string][]string{"userAccountControl": {"512"}, "accountExpires": {"0"}}, false, "", ""},
		{"never expires (0x7FFFFFFFFFFFFFFF)", map[string][]string{"accountExpires": {"9223372036854775807"}}, false, "", ""},
		{"expired a year ago", map[string][]string{"userAccountControl": {"512"}, "accountExpires": {"134093232000000000"}}, true, "", ""},
		{"expires at this instant", map[string][]string{"accountExpires": {nowTicks}}, true, "", ""},
		{"expires 100 ns from now", map[string][]string{"accountExpires": {"134408592000000001"}}, false, "", ""},
		{"expires in 2100", map[string][]string{"accountExpires": {"157469184000000000"}}, false, "", ""},
		{"expired right after 1601", map[string][]string{"accountExpires": {"1"}}, true, "", ""},
		{"disabled, never expires", map[string][]string{"userAccountControl": {"514"}, "accountExpires": {"0"}}, true, "", ""},
		{"garbage accountExpires", map[string][]string{"accountExpires": {"never"}}, false, "accountExpires", ""},
		{"empty accountExpires", map[string][]string{"accountExpires": {""}}, false, "accountExpires", ""},
		{"negative accountExpires", map[string][]string{"accountExpires": {"-1"}}, false, "accountExpires", ""},
		{"signed accountExpires", map[string][]string{"accountExpires": {"+1"}}, false, "accountExpires", ""},
		{"accountExpires with a space", map[string][]string{"accountExpires": {" 0"}}, false, "accountExpires", ""},
		{"accountExpires beyond int64", map[string][]string{"accountExpires": {"9223372036854775808"}}, false, "accountExpires", ""},
		{"accountExpires twice", map[string][]string{"accountExpires": {"0", "1"}}, false, "accountExpires has 2 values", ""},
		{"garbage userAccountControl", map[string][]string{"userAccountControl": {"0x2"}}, false, "userAccountControl", ""},
		{"disabled beats garbage expiry", map[string][]string{"userAccountControl": {"514"}, "accountExpires": {"x"}}, true, "", ""},
		// Exchange mailboxes without a person: disabled by nature.
		{"disabled shared mailbox", map[string][]string{"userAccountControl": {"514"}, "msExchRecipientTypeDetails": {"4"}}, false, "", KindShared},
		{"disabled room mailbox", map[string][]string{"userAccountControl": {"514"}, "msExchRecipientTypeDetails": {"16"}}, false, "", KindRoom},
		{"disabled equipment mailbox", map[string][]string{"userAccountControl": {"514"}, "msExchRecipientTypeDetails": {"32"}}, false, "", KindEquipment},
		{"remote shared mailbox (details)", map[string][]string{"userAccountControl": {"514"}, "msExchRecipientTypeDetails": {"34359738368"}}, false, "", KindShared},
		{"migrated shared mailbox (remote type 100)", map[string][]string{"userAccountControl": {"514"}, "msExchRemoteRecipientType": {"100"}}, false, "", KindShared},
		{"migrated room mailbox (remote type 36)", map[string][]string{"userAccountControl": {"514"}, "msExchRemoteRecipientType": {"36"}}, false, "", KindRoom},
		{"migrated equipment mailbox (remote type 68)", map[string][]string{"userAccountControl": {"514"}, "msExchRemoteRecipientType": {"68"}}, false, "", KindEquipment},
		{"migrated user mailbox (remote type 4)", map[string][]string{"userAccountControl": {"514"}, "msExchRemoteRecipientType": {"4"}}, true, "", ""},
		{"disabled person with a user mailbox", map[string][]string{"userAccountControl": {"514"}, "msExchRecipientTypeDetails": {"1"}}, true, "", ""},
		{"disabled linked mailbox", map[string][]string{"userAccountControl": {"514"}, "msExchRecipientTypeDetails": {"2"}}, true, "", ""},
		{"expired shared mailbox", map[string][]string{"userAccountControl": {"514"}, "msExchRecipientTypeDetails": {"4"}, "accountExpires": {"134093232000000000"}}, true, "", KindShared},
		{"enabled shared mailbox", map[string][]string{"userAccountControl": {"512"}, "msExchRecipientTypeDetails": {"4"}}, false, "", KindShared},
		{"garbage recipient type", map[string][]string{"userAccountControl": {"514"}, "msExchRecipientTypeDetails": {"shared"}}, false, "msExchRecipientTypeDetails", ""},
		{"recipient type twice", map[string][]string{"userAccountControl": {"514"}, "msExchRecipientTypeDetails": {"4", "1"}}, false, "msExchRecipientTypeDetails has 2 values", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := ldap.NewEntry("CN=Alice,OU=People,DC=example,DC=test", tc.attrs)
			kind, inactive, err := accountState(e, now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), e.DN) {
					t.Fatalf("error %v, want one naming %s and %q", err, e.DN, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if inactive != tc.inactive {
				t.Fatalf("inactive = %v, want %v", inactive, tc.inactive)
			}
			if want := cmp.Or(tc.kind, KindUser); kind != want {
				t.Fatalf("kind %q, want %q", kind, want)
			}
		})
	}
}

// TestADAccountExpiry pins the epoch conversion to dates computed
// independently (Windows FILETIME values of well-known instants).
func TestADAccountExpiry(t *testing.T) {
	for _, tc := range []struct {
		ticks int64
		want  time.Time
	}{
		{116444736000000000, time.Unix(0, 0).UTC()},                                  // the Unix epoch
		{1, time.Date(1601, 1, 1, 0, 0, 0, 100, time.UTC)},                           // one tick after AD's epoch
		{132223104000000000, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},            // 2020-01-01
		{132223104000000001, time.Date(2020, 1, 1, 0, 0, 0, 100, time.UTC)},          // and 100 ns later
		{adNeverExpires - 1, time.Date(30828, 9, 14, 2, 48, 5, 477580600, time.UTC)}, // the last real value (FILETIME maximum 30828-09-14 02:48:05.4775807 less one tick)
	} {
		got, never, err := adAccountExpiry(tc.ticks)
		if err != nil || never || !got.Equal(tc.want) {
			t.Errorf("%d: %v never=%v err=%v, want %v", tc.ticks, got, never, err, tc.want)
		}
	}
	for _, ticks := range []int64{0, adNeverExpires} {
		if _, never, err := adAccountExpiry(ticks); err != nil || !never {
			t.Errorf("%d: never=%v err=%v, want never", ticks, never, err)
		}
	}
	if _, _, err := adAccountExpiry(-1); err == nil {
		t.Error("-1: no error")
	}
}
