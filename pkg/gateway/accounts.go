package gateway

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// AccountRole says for whom an SMTP AUTH account may send mail.
type AccountRole string

const (
	// RoleRelay is the Exchange send connector: it submits the mail of
	// every user of the organisation, so the listener accepts any envelope
	// sender and the pipeline checks the sender against the directory.
	RoleRelay AccountRole = "relay"
	// RolePersonal is one user's own client: it may send only as its own
	// address (the account name) and that user's aliases.
	RolePersonal AccountRole = "personal"
)

// Valid says whether r is one of the roles the users file knows.
func (r AccountRole) Valid() bool { return r == RoleRelay || r == RolePersonal }

// Account is one entry of smtp.auth_users_file.
type Account struct {
	Hash []byte // bcrypt
	Role AccountRole
}

// LoadUsers reads smtp.auth_users_file: one account per line,
// "name:bcrypt-hash[:role]" with role relay or personal; blank lines and
// lines starting with # are ignored. Without a role, a name that is an
// email address is personal; any other name must say its role, since
// guessing "relay" would let a forgotten account send as everyone.
//
// Anything doubtful refuses the whole file: an account silently dropped or
// misread could mean AUTH not required at all, or a relay by mistake.
func LoadUsers(path string) (map[string]Account, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("smtp.auth_users_file: %w", err)
	}
	accounts := map[string]Account{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, acct, err := parseAccountLine(line)
		if err != nil {
			return nil, fmt.Errorf("smtp.auth_users_file %s line %d: %w", path, i+1, err)
		}
		if _, dup := accounts[name]; dup {
			return nil, fmt.Errorf("smtp.auth_users_file %s line %d: user %q appears twice (keep one line per account)", path, i+1, name)
		}
		accounts[name] = acct
	}
	if len(accounts) == 0 {
		// An empty map means "no AUTH required": an empty or commented-out
		// file must not open the listener to every allowed host.
		return nil, fmt.Errorf("smtp.auth_users_file %s: no accounts (add name:bcrypt-hash[:relay|personal] lines, or unset auth_users_file)", path)
	}
	return accounts, nil
}

// parseAccountLine reads "name:bcrypt-hash[:role]". Its errors never hold
// the hash.
func parseAccountLine(line string) (string, Account, error) {
	fields := strings.Split(line, ":")
	if len(fields) < 2 || len(fields) > 3 || fields[0] == "" {
		return "", Account{}, errors.New("want name:bcrypt-hash[:role] (make the hash with htpasswd -nbB name password)")
	}
	name, hash := fields[0], []byte(fields[1])
	if _, err := bcrypt.Cost(hash); err != nil {
		return "", Account{}, fmt.Errorf("user %q: not a bcrypt hash (make one with htpasswd -nbB): %w", name, err)
	}
	acct := Account{Hash: hash}
	switch {
	case len(fields) == 3:
		acct.Role = AccountRole(fields[2])
		if !acct.Role.Valid() {
			return "", Account{}, fmt.Errorf("user %q: unknown role %q (use relay for the Exchange connector account, personal for one user's own address)", name, fields[2])
		}
	case isPlainAddress(name):
		acct.Role = RolePersonal
	default:
		return "", Account{}, fmt.Errorf("user %q: no role and not an email address (append :relay for the Exchange connector account)", name)
	}
	if acct.Role == RolePersonal && !isPlainAddress(name) {
		return "", Account{}, fmt.Errorf("user %q: a personal account's name must be the user's email address (or append :relay for the Exchange connector account)", name)
	}
	return name, acct, nil
}

// isPlainAddress says s is a bare addr-spec (local@domain), nothing else.
func isPlainAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s && strings.Count(s, "@") == 1
}

// dummyHashFor returns a hash of a random password at the highest cost
// among accounts, compared against when the user is unknown so that an
// unknown name takes as long as a known one (a cheaper dummy would tell
// which accounts exist). Nil when there are no accounts.
func dummyHashFor(accounts map[string]Account) []byte {
	highest := 0
	for _, a := range accounts {
		if c, err := bcrypt.Cost(a.Hash); err == nil && c > highest {
			highest = c
		}
	}
	if highest == 0 {
		return nil
	}
	pw := make([]byte, 32)
	_, _ = rand.Read(pw)
	h, err := bcrypt.GenerateFromPassword(pw, highest)
	if err != nil {
		// bcrypt.Cost accepted the cost, so only a broken bcrypt gets here.
		panic(fmt.Sprintf("smtp auth: dummy hash at cost %d: %v", highest, err))
	}
	return h
}
