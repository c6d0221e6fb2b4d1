package message

import (
	"regexp"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// addressInName finds what a reader would take for an address inside a
// display name. It is loose on purpose (any "x@y.z" run): a name like
// "ceo@example.org" <alice@example.org> shows the CEO while the mail is
// alice's, and the gateway would sign it as alice.
var addressInName = regexp.MustCompile(`[^\s<>"'(),;:\[\]@]+@[^\s<>"'(),;:\[\]@]+\.[^\s<>"'(),;:\[\]@]+`)

// checkName refuses a display name that shows an address other than the
// mailbox's own. The name is compared after NFKC normalisation, so that
// full-width or compatibility look-alikes (＠, ｅ) count as what they show.
func checkName(m Mailbox, f *Field) error {
	if m.Name == "" {
		return nil
	}
	name := norm.NFKC.String(m.Name)
	for _, shown := range addressInName.FindAllString(name, -1) {
		shown = strings.Trim(shown, ".")
		if !SameAddress(shown, m.Address) {
			return &Error{Line: f.Line, Field: f.Name, Err: ErrMisleadingName,
				Reason: "the display name shows " + quoteShown(shown) + " but the address is " + m.Address + "; remove the address from the name"}
		}
	}
	return nil
}

func quoteShown(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + s + `"`
}
