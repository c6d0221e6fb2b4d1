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

// Mailbox kinds, as `pki status` shows them. Exchange keeps shared, room
// and equipment mailboxes as user objects whose account is disabled (no
// one logs on as them) and says what they are in
// msExchRecipientTypeDetails (on premises) or msExchRemoteRecipientType
// (mailboxes in Exchange Online, synced from AD).
const (
	KindUser      = "user"
	KindShared    = "shared"
	KindRoom      = "room"
	KindEquipment = "equipment"
)

const (
	// attrRecipientTypeDetails is ms-Exch-Recipient-Type-Details
	// (1.2.840.113556.1.4.7000.102.50855, LargeInteger).
	attrRecipientTypeDetails = "msExchRecipientTypeDetails"
	// attrRemoteRecipientType is ms-Exch-Remote-Recipient-Type
	// (1.2.840.113556.1.4.7000.102.51611, LargeInteger, a bit field).
	attrRemoteRecipientType = "msExchRemoteRecipientType"
)

// recipientTypeDetailsKinds maps the msExchRecipientTypeDetails values of
// mailboxes without a person behind them; every other value (1
// UserMailbox, 2 LinkedMailbox, ...) is a person's.
var recipientTypeDetailsKinds = map[int64]string{
	4:           KindShared,    // SharedMailbox
	16:          KindRoom,      // RoomMailbox
	32:          KindEquipment, // EquipmentMailbox
	8589934592:  KindRoom,      // RemoteRoomMailbox
	17179869184: KindEquipment, // RemoteEquipmentMailbox
	34359738368: KindShared,    // RemoteSharedMailbox
}

// remoteRecipientTypeMask selects the mailbox type in
// msExchRemoteRecipientType: 0x20 RoomMailbox, 0x40 EquipmentMailbox, both
// (0x60) SharedMailbox; the other bits (provisioning, migrated) say
// nothing about who uses it.
const remoteRecipientTypeMask = 0x60

// accountState reads what kind of mailbox the entry is and whether it is
// inactive: a disabled person account (userAccountControl ACCOUNTDISABLE)
// or any account whose accountExpires lies at or before now. Neither may
// hold a certificate. A disabled account that Exchange marks as a shared,
// room or equipment mailbox is active: being disabled is what such
// mailboxes are. A value that is not what AD writes is an error naming the
// entry and attribute: guessing "enabled" would keep certificates of
// accounts the admin shut, guessing "disabled" would revoke everybody when
// a server sends garbage.
func accountState(e *ldap.Entry, now time.Time) (kind string, inactive bool, err error) {
	kind, err = mailboxKind(e)
	if err != nil {
		return "", false, err
	}
	uac, ok, err := entryInteger(e, attrUserAccountControl)
	if err != nil {
		return kind, false, err
	}
	if ok && uac&uacAccountDisable != 0 && kind == KindUser {
		return kind, true, nil
	}
	raw, ok, err := entryInteger(e, attrAccountExpires)
	if err != nil || !ok {
		return kind, false, err
	}
	expires, never, err := adAccountExpiry(raw)
	if err != nil {
		return kind, false, fmt.Errorf("user %s: %s: %w: fix the attribute in the directory; no certificate was changed", e.DN, attrAccountExpires, err)
	}
	return kind, !never && !now.Before(expires), nil
}

// mailboxKind reads the Exchange recipient type; an entry without either
// attribute (no Exchange schema, plain LDAP) is a user.
func mailboxKind(e *ldap.Entry) (string, error) {
	details, ok, err := entryInteger(e, attrRecipientTypeDetails)
	if err != nil {
		return "", err
	}
	if ok {
		if k, mailbox := recipientTypeDetailsKinds[details]; mailbox {
			return k, nil
		}
	}
	remote, ok, err := entryInteger(e, attrRemoteRecipientType)
	if err != nil {
		return "", err
	}
	if ok {
		switch remote & remoteRecipientTypeMask {
		case 0x60:
			return KindShared, nil
		case 0x20:
			return KindRoom, nil
		case 0x40:
			return KindEquipment, nil
		}
	}
	return KindUser, nil
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
