package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in the file as a Go duration string
// ("15m", "8760h") or a whole number of days ("90d").
type Duration struct{ time.Duration }

// maxDays keeps "Nd" inside time.Duration (about 292 years).
const maxDays = 100000

// UnmarshalText parses a Go duration string or "Nd" (N whole days of 24
// hours; retention periods are written in days).
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && !strings.ContainsAny(n, "+.") {
		days, err := strconv.Atoi(n)
		if err != nil || days > maxDays || days < -maxDays {
			return fmt.Errorf("%q is not a duration: not a number of days (use e.g. \"90d\")", s)
		}
		d.Duration = time.Duration(days) * 24 * time.Hour
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (use e.g. \"30s\", \"15m\", \"720h\", \"90d\")", s)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }
