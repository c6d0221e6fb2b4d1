package pki

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Account state as AD keeps it on user objects. Other servers carry these
// attributes only where an AD-like schema was added; an entry without them
// is an enabled account that never expires.
const (
	attrUserAccountControl = "userAccountControl"
	attrAccountExpires     = "accountExpires"
	// adEpochToUnix is the number of seconds from AD's epoch
	// (1601-01-01 UTC, the Windows FILETIME origin) to the Unix epoch.
	adEpochToUnix = 11644473600
	// adTicksPerSecond: accountExpires counts 100 ns intervals.
	adTicksPerSecond = 10_000_000
	// adNeverExpires is what AD writes for "never" when an expiry was
	// set and cleared again; a fresh account holds 0.
	adNeverExpires = math.MaxInt64
)

// accountInactive reports whether the entry is a disabled account
// (userAccountControl ACCOUNTDISABLE) or one whose accountExpires lies at
// or before now: neither may hold a certificate. A value that is not what
// AD writes is an error naming the entry and attribute: guessing "enabled"
// would keep certificates of accounts the admin shut, guessing "disabled"
// would revoke everybody when a server sends garbage.
func accountInactive(e *ldap.Entry, now time.Time) (bool, error) {
	uac, ok, err := entryInteger(e, attrUserAccountControl)
	if err != nil {
		return false, err
	}
	if ok && uac&uacAccountDisable != 0 {
		return true, nil
	}
	raw, ok, err := entryInteger(e, attrAccountExpires)
	if err != nil || !ok {
		return false, err
	}
	expires, never, err := adAccountExpiry(raw)
	if err != nil {
		return false, fmt.Errorf("user %s: %s: %w: fix the attribute in the directory; no certificate was changed", e.DN, attrAccountExpires, err)
	}
	return !never && !now.Before(expires), nil
}

// entryInteger reads a single-valued AD integer attribute (decimal, as
// LDAP transfers Integer and Integer8): ok is false when the entry lacks
// it. Several values, a sign, spaces or anything but digits are errors.
func entryInteger(e *ldap.Entry, attr string) (n int64, ok bool, err error) {
	vals := e.GetAttributeValues(attr)
	switch len(vals) {
	case 0:
		return 0, false, nil
	case 1:
	default:
		return 0, false, fmt.Errorf("user %s: %s has %d values, AD gives one: fix the entry in the directory; no certificate was changed", e.DN, attr, len(vals))
	}
	v := vals[0]
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			v = ""
			break
		}
	}
	n, err = strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("user %s: %s %.40q is not a non-negative decimal integer: fix the entry in the directory; no certificate was changed", e.DN, attr, vals[0])
	}
	return n, true, nil
}

// adAccountExpiry converts accountExpires (100 ns intervals since
// 1601-01-01 UTC) to a time; 0 and 0x7FFFFFFFFFFFFFFF mean the account
// never expires.
func adAccountExpiry(ticks int64) (expires time.Time, never bool, err error) {
	switch {
	case ticks == 0 || ticks == adNeverExpires:
		return time.Time{}, true, nil
	case ticks < 0:
		return time.Time{}, false, fmt.Errorf("%d is negative, not a time", ticks)
	}
	return time.Unix(ticks/adTicksPerSecond-adEpochToUnix, (ticks%adTicksPerSecond)*100).UTC(), false, nil
}
