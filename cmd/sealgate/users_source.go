package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/sealgate/sealgate/pkg/config"
	"github.com/sealgate/sealgate/pkg/pki"
)

// newUserSource builds the PKI user source from [users]: the static list,
// or the LDAP/AD directory (returned as ldapDir too, nil for static, since
// it also publishes certificates and answers group lookups). The pki
// commands, `serve` and `policy explain` all use it, so they see the same
// users. Errors are configuration errors (exit code 2).
func newUserSource(cfg *config.Config) (users pki.UserSource, ldapDir *pki.LDAPDirectory, err error) {
	switch cfg.Users.Source {
	case "", "static":
		src := pki.StaticSource{Groups: cfg.Users.Groups}
		for _, u := range cfg.Users.Static {
			src.List = append(src.List, pki.StaticUser{Email: u.Email, Name: u.Name, Aliases: u.Aliases, Groups: u.Groups})
		}
		return src, nil, nil
	case "ldap":
		l := cfg.Users.LDAP
		var pw string
		if l.BindPasswordFile != "" {
			b, err := os.ReadFile(cfg.Path(l.BindPasswordFile))
			if err != nil {
				return nil, nil, asUsage(fmt.Errorf("users.ldap.bind_password_file: %w", err))
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		tlsCfg, err := ldapTLS(cfg)
		if err != nil {
			return nil, nil, err
		}
		var domains []pki.LDAPDomain
		for _, dom := range l.Domains {
			domains = append(domains, pki.LDAPDomain{BaseDN: dom.BaseDN, URL: dom.URL})
		}
		d, err := pki.NewLDAPDirectory(pki.LDAPConfig{URL: l.URL, BindDN: l.BindDN, BindPassword: pw, BaseDN: l.BaseDN,
			UserFilter: l.UserFilter, GroupBaseDN: l.GroupBaseDN, Groups: cfg.Users.Groups, Timeout: l.Timeout.Duration,
			TLS: tlsCfg, StartTLS: l.StartTLS, AllowPlaintextBind: l.AllowPlaintextBind, ReadPublished: l.PublishCertificates,
			GlobalCatalog: l.GlobalCatalog, Domains: domains})
		if err != nil {
			return nil, nil, asUsage(fmt.Errorf("users.ldap: %w", err))
		}
		return d, d, nil
	}
	return nil, nil, usageErrorf("users.source %q is not static or ldap", cfg.Users.Source)
}
