package pki

import (
	"context"
	"fmt"
	"net/mail"
	"slices"
	"strings"
)

// User is one sender who should hold a certificate.
type User struct {
	Email   string   // primary address, lower case
	Aliases []string // further addresses (proxyAddresses smtp:), lower case, sorted
	Name    string
	// DN is the directory entry certificates are published to ("" for
	// static users: nothing to publish).
	DN string
	// Published holds the DER certificates currently in the entry's
	// userCertificate;binary (nil if the source cannot tell), so a rollout
	// can see whether publishing is still owed.
	Published [][]byte
	// Kind is what the account is: KindUser (also "" from sources that
	// cannot tell), KindShared, KindRoom or KindEquipment.
	Kind string
}

// Addresses is the primary address followed by the aliases: the SANs.
func (u User) Addresses() []string {
	return append([]string{u.Email}, u.Aliases...)
}

// UserSource lists the users eligible for a certificate (members of the
// configured groups, enabled).
type UserSource interface {
	Users(ctx context.Context) ([]User, error)
}

// StaticUser is a user from the config file ([[users.static]]).
type StaticUser struct {
	Email   string
	Name    string
	Aliases []string
	Groups  []string
}

// StaticSource serves [[users.static]] entries that are in one of Groups.
type StaticSource struct {
	Groups []string
	List   []StaticUser
}

// Users returns the static users in one of the configured groups.
func (s StaticSource) Users(context.Context) ([]User, error) {
	var out []User
	seen := map[string]bool{}
	for i, su := range s.List {
		if !memberOfAny(su.Groups, s.Groups) {
			continue
		}
		email, err := normalizeAddress(su.Email)
		if err != nil {
			return nil, fmt.Errorf("users.static[%d].email: %w", i, err)
		}
		if seen[email] {
			return nil, fmt.Errorf("users.static[%d].email: %s is listed twice", i, email)
		}
		seen[email] = true
		u := User{Email: email, Name: su.Name}
		for _, a := range su.Aliases {
			a, err := normalizeAddress(a)
			if err != nil {
				return nil, fmt.Errorf("users.static[%d].aliases: %w", i, err)
			}
			u.Aliases = append(u.Aliases, a)
		}
		u.Aliases = cleanAliases(u.Email, u.Aliases)
		out = append(out, u)
	}
	return out, nil
}

func memberOfAny(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if strings.EqualFold(h, w) {
				return true
			}
		}
	}
	return false
}

// normalizeAddress checks an address is a bare addr-spec and lower-cases
// it (rfc822Name SAN comparison is case-insensitive in practice).
func normalizeAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(s, "@") {
		return "", fmt.Errorf("%q is not a plain email address", s)
	}
	return strings.ToLower(s), nil
}

// cleanAliases drops the primary address and duplicates and sorts, so that
// address sets compare equal regardless of directory order.
func cleanAliases(primary string, aliases []string) []string {
	var out []string
	for _, a := range aliases {
		if a != primary && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}
