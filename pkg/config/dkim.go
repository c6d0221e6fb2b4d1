package config

import (
	"fmt"
	"os"
	"strings"
)

// DKIM is the signing of what leaves (after S/MIME and PDF, over the
// bytes sent). No domains: no signing.
type DKIM struct {
	Selector string `toml:"selector"`
	// Domains a message is signed for: its From domain, matched exactly
	// (case-insensitive); a subdomain only when listed itself.
	Domains []string `toml:"domains"`
	// KeyFile is the PEM PKCS#8 private key (RSA ≥ 2048 or Ed25519), 0600;
	// empty: data_dir/dkim.key.
	KeyFile string `toml:"key_file"`
}

// Enabled says whether messages are signed.
func (d DKIM) Enabled() bool { return len(d.Domains) > 0 }

// DKIMKeyPath is where the DKIM key is read from (and `dkim keygen`
// writes it to).
func (c *Config) DKIMKeyPath() string {
	if c.DKIM.KeyFile == "" {
		return c.DataPath("dkim.key")
	}
	return c.Path(c.DKIM.KeyFile)
}

// dkim checks the section's form. The key file's content is read by the
// check `sealgate` registers (it knows the key formats); here: the
// selector's shape, the domains, and that the key file is not readable by
// others when it exists.
func (v *validator) dkim() {
	d := v.c.DKIM
	if !isDKIMSelector(d.Selector) {
		v.add("dkim.selector", nil, fmt.Sprintf("%q is not a DKIM selector", d.Selector),
			`use letters, digits, hyphens and dots, e.g. "sealgate" or "s2026"; it becomes <selector>._domainkey.<domain> in DNS`)
	}
	if !d.Enabled() {
		if d.KeyFile != "" {
			v.add("dkim.key_file", []string{"dkim.domains"}, "has no effect without dkim.domains", `list the domains to sign for, e.g. domains = ["example.org"] in [dkim]`)
		}
		return
	}
	seen := map[string]int{}
	for i, dom := range d.Domains {
		key := indexKey("dkim.domains", i)
		if strings.HasPrefix(dom, "*.") {
			v.add(key, nil, fmt.Sprintf("%q: wildcards are not signed for", dom), "list each domain (and subdomain) to sign for by name")
			continue
		}
		v.domain(key, dom, false)
		l := strings.ToLower(dom)
		if j, dup := seen[l]; dup {
			v.add(key, []string{indexKey("dkim.domains", j)}, fmt.Sprintf("%q is listed twice", dom), "remove one")
		}
		seen[l] = i
	}
	p := v.c.DKIMKeyPath()
	st, err := os.Stat(p)
	switch {
	case err != nil && os.IsNotExist(err):
		// Left to the registered check: `dkim keygen` must be able to
		// load the file to create the key.
	case err != nil:
		v.add("dkim.key_file", nil, fmt.Sprintf("cannot read %s: %v", p, unwrapPathError(err)), "check the path and its permissions")
	case !st.Mode().IsRegular():
		v.add("dkim.key_file", nil, fmt.Sprintf("%s is not a regular file", p), "name the key file itself")
	case st.Mode().Perm()&0o077 != 0:
		v.add("dkim.key_file", nil, fmt.Sprintf("%s has mode %04o, readable or writable by group or others", p, st.Mode().Perm()),
			fmt.Sprintf("run `chmod 600 %s`, and consider the key exposed: make a new one with `sealgate dkim keygen --force` and publish its record", p))
	}
}

// isDKIMSelector accepts dot-separated labels of letters, digits,
// hyphens and underscores.
func isDKIMSelector(s string) bool {
	if s == "" || len(s) > 63*4 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
