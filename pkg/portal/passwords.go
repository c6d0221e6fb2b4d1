package portal

import (
	"bufio"
	_ "embed"
	"strings"
	"unicode"
	"unicode/utf8"
)

// commonPasswords is a bundled list of passwords that attackers try first
// (one per line, compared case-insensitively). Only entries at least as long
// as the shortest allowed password matter; shorter ones are refused anyway.
//
//go:embed common-passwords.txt
var commonPasswordsFile string

var commonPasswords = func() map[string]bool {
	m := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(commonPasswordsFile))
	for sc.Scan() {
		if w := strings.TrimSpace(sc.Text()); w != "" && !strings.HasPrefix(w, "#") {
			m[strings.ToLower(w)] = true
		}
	}
	return m
}()

// passwordProblem is why a chosen password is refused ("" when it is
// fine): the keys of the page texts.
type passwordProblem string

const (
	pwOK       passwordProblem = ""
	pwMismatch passwordProblem = "err_mismatch"
	pwShort    passwordProblem = "err_short"
	pwLong     passwordProblem = "err_long"
	pwCommon   passwordProblem = "err_common"
)

// maxPasswordBytes bounds what is sealed and what a PDF reader must type.
const maxPasswordBytes = 256

// checkPassword applies the visible rule: both entries equal, at least
// minLength characters, not a common password, not made of the
// recipient's address, not one character repeated.
func checkPassword(pw, confirm, email string, minLength int) passwordProblem {
	switch {
	case pw != confirm:
		return pwMismatch
	case len(pw) > maxPasswordBytes || !utf8.ValidString(pw):
		return pwLong
	case utf8.RuneCountInString(pw) < minLength:
		return pwShort
	}
	low := strings.ToLower(pw)
	if commonPasswords[low] || commonPasswords[strings.TrimRightFunc(low, unicode.IsDigit)] {
		return pwCommon
	}
	local, _, _ := strings.Cut(strings.ToLower(email), "@")
	if low == strings.ToLower(email) || (len(local) >= 4 && strings.Contains(low, local) && utf8.RuneCountInString(low)-utf8.RuneCountInString(local) < minLength) {
		return pwCommon
	}
	first, _ := utf8.DecodeRuneInString(low)
	if strings.Trim(low, string(first)) == "" {
		return pwCommon
	}
	return pwOK
}
