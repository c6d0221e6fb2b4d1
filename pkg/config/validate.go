package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// validate checks values and their combinations. It only checks what the
// file says (enums, formats, required companions, files that must exist);
// what rules mean together is pkg/policy's business.
func validate(c *Config, ps *problems) {
	v := &validator{c: c, ps: ps}
	v.top()
	v.smtp()
	v.relay()
	v.store()
	v.pki()
	v.users()
	v.keyservers()
	v.trust()
	v.policy()
	v.pdf()
	v.http()
	v.portal()
	v.events()
	v.log()
	v.webhooks()
	v.inbound()
	v.dkim()
}

type validator struct {
	c  *Config
	ps *problems
}

func (v *validator) add(key string, near []string, msg, hint string) { v.ps.add(key, near, msg, hint) }

// oneOf checks an enum value. It is false, and checks that depend on the
// value are skipped, when the key could not be decoded: the default it
// still holds is not what the admin wrote, so "relay.mode = 5" must not
// also bring "relay.smarthost is required".
func (v *validator) oneOf(key, val string, allowed ...string) bool {
	if v.ps.has(key) {
		return false
	}
	if slices.Contains(allowed, val) {
		return true
	}
	msg := fmt.Sprintf("%q is not allowed", val)
	if val == "" {
		msg = "must not be empty"
	}
	v.add(key, nil, msg, "use one of: "+strings.Join(allowed, ", "))
	return false
}

func (v *validator) required(key string, val string, near []string, why string) {
	if strings.TrimSpace(val) == "" {
		v.add(key, near, "is required "+why, "set "+key)
	}
}

func (v *validator) positive(key string, d Duration) {
	if d.Duration <= 0 {
		v.add(key, nil, fmt.Sprintf("%q must be longer than zero", d.Duration), `use e.g. "30s", "15m", "720h"`)
	}
}

func (v *validator) atLeast(key string, n, low int64) {
	if n < low {
		v.add(key, nil, fmt.Sprintf("%d is too small", n), fmt.Sprintf("use %d or more", low))
	}
}

// listenAddr checks host:port for a listener (empty host means all
// interfaces, port 0 a free one).
func (v *validator) listenAddr(key, val string) {
	if _, _, err := splitHostPort(val, true); err != nil {
		v.add(key, nil, fmt.Sprintf("%q is not a listen address: %v", val, err), `write host:port, e.g. "127.0.0.1:2525" or ":2525"`)
	}
}

// hostPort checks host:port for a peer to connect to.
func (v *validator) hostPort(key, val string, near []string, why string) {
	if val == "" {
		v.add(key, near, "is required "+why, `set host:port, e.g. "mail.example.org:25"`)
		return
	}
	if host, _, err := splitHostPort(val, false); err != nil || host == "" {
		if err == nil {
			err = fmt.Errorf("missing host")
		}
		v.add(key, near, fmt.Sprintf("%q is not host:port: %v", val, err), `write host:port, e.g. "mail.example.org:25" or "[2001:db8::1]:25"`)
	}
}

func splitHostPort(val string, allowZero bool) (string, int, error) {
	host, port, err := net.SplitHostPort(val)
	if err != nil {
		return "", 0, stripAddrPrefix(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !allowZero) {
		return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return host, n, nil
}

// stripAddrPrefix drops net's "address x: " prefix, which repeats the value
// the message already quotes.
func stripAddrPrefix(err error) error {
	if ae, ok := err.(*net.AddrError); ok {
		return fmt.Errorf("%s", ae.Err)
	}
	return err
}

// file checks that a *_file key, if set, names a readable regular file.
// The message names the resolved path: that is where sealgate looked.
func (v *validator) file(key, val string) {
	if val == "" {
		return
	}
	p := v.c.Path(val)
	st, err := os.Stat(p)
	switch {
	case err != nil && os.IsNotExist(err):
		v.add(key, nil, fmt.Sprintf("file %s does not exist", p), "create it, or fix the path (relative paths are relative to the config file's directory)")
		return
	case err != nil:
		v.add(key, nil, fmt.Sprintf("cannot read %s: %v", p, unwrapPathError(err)), "check the path and its permissions")
		return
	case st.IsDir():
		v.add(key, nil, fmt.Sprintf("%s is a directory, want a file", p), "name the file itself")
		return
	}
	f, err := os.Open(p)
	if err != nil {
		v.add(key, nil, fmt.Sprintf("cannot read %s: %v", p, unwrapPathError(err)), "make it readable by the user sealgate runs as")
		return
	}
	_ = f.Close()
}

// dir checks that a directory key, if set, names an existing directory.
func (v *validator) dir(key, val string) {
	if val == "" {
		return
	}
	p := v.c.Path(val)
	st, err := os.Stat(p)
	if err != nil {
		v.add(key, nil, fmt.Sprintf("cannot use directory %s: %v", p, unwrapPathError(err)), "create it, or fix the path (relative paths are relative to the config file's directory)")
		return
	}
	if !st.IsDir() {
		v.add(key, nil, fmt.Sprintf("%s is not a directory", p), "name a directory")
	}
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// ldapURL checks an ldap:// or ldaps:// URL with a host.
func (v *validator) ldapURL(key, val string) {
	u, err := url.Parse(val)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		v.add(key, nil, fmt.Sprintf("%q is not an LDAP URL", val), `write e.g. "ldaps://dc1.example.org:636" or "ldap://127.0.0.1:389"`)
	}
}

// ldapTransport refuses a configuration that would send the bind
// password in clear text: a simple bind over ldap:// without StartTLS,
// unless allow_plaintext_bind says the admin means it. StartTLS on an
// ldaps:// URL is a contradiction (TLS twice), not silently ignored.
func (v *validator) ldapTransport(prefix string, t ldapTransportKeys) {
	u, err := url.Parse(t.url)
	if err != nil {
		return // ldapURL reported it
	}
	switch {
	case t.startTLS && u.Scheme == "ldaps":
		v.add(prefix+".starttls", []string{prefix + ".url"}, fmt.Sprintf("is set but %s.url %q is already TLS (ldaps://)", prefix, t.url),
			`remove starttls, or use ldap://HOST:389 with starttls = true`)
	case u.Scheme == "ldap" && !t.startTLS && t.bindDN != "" && !t.allowPlaintextBind:
		v.add(prefix+".url", []string{prefix + ".bind_dn"}, fmt.Sprintf("%q without starttls would send the password of %s.bind_dn in clear text", t.url, prefix),
			`use ldaps://HOST:636, or set starttls = true (both verify the server against ca_file); set allow_plaintext_bind = true only for a directory on this host`)
	}
}

// ldapTransportKeys are the settings of an LDAP connection that decide
// whether a bind password could cross the wire in clear text.
type ldapTransportKeys struct {
	url, bindDN                  string
	startTLS, allowPlaintextBind bool
}

// emailAddr checks a bare address as SMTP carries it: no display name.
func (v *validator) emailAddr(key, val string) bool {
	a, err := mail.ParseAddress(val)
	if err != nil || a.Address != val || a.Name != "" {
		v.add(key, nil, fmt.Sprintf("%q is not an email address", val), `write just the address, e.g. "alice@example.org"`)
		return false
	}
	return true
}

// domain checks a domain name in a list; allowWildcard permits the
// "*.example.com" form the policy matcher understands.
func (v *validator) domain(key, val string, allowWildcard bool) {
	d := val
	if allowWildcard {
		d = strings.TrimPrefix(d, "*.")
	}
	if d == "" || strings.ContainsAny(d, "@ \t/:*") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		hint := `write a domain, e.g. "example.org"`
		if allowWildcard {
			hint += ` or "*.example.org" for its subdomains`
		}
		v.add(key, nil, fmt.Sprintf("%q is not a domain", val), hint)
	}
}

func (v *validator) top() {
	v.required("data_dir", v.c.DataDir, nil, "(spool, store and embedded CA live there)")
}

func (v *validator) smtp() {
	s := v.c.SMTP
	v.listenAddr("smtp.listen", s.Listen)
	if strings.TrimSpace(s.Hostname) == "" || strings.ContainsAny(s.Hostname, " \t/@") {
		v.add("smtp.hostname", nil, fmt.Sprintf("%q is not a host name", s.Hostname), `the name sealgate greets with, e.g. "sealgate.example.org"`)
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		missing := "smtp.tls_key_file"
		if s.TLSCertFile == "" {
			missing = "smtp.tls_cert_file"
		}
		v.add(missing, []string{"smtp.tls_cert_file", "smtp.tls_key_file"}, "is required when the other of tls_cert_file/tls_key_file is set", "set both (certificate chain and its key) or neither (a self-signed certificate is generated)")
	}
	v.file("smtp.tls_cert_file", s.TLSCertFile)
	v.file("smtp.tls_key_file", s.TLSKeyFile)
	v.file("smtp.auth_users_file", s.AuthUsersFile)
	for i, n := range s.AllowedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			v.add(indexKey("smtp.allowed_networks", i), []string{"smtp.allowed_networks"}, fmt.Sprintf("%q is not a network in CIDR notation", n), `write e.g. "10.0.0.0/8"; a single host is "192.0.2.7/32" or "2001:db8::7/128"`)
		}
	}
	v.atLeast("smtp.max_message_bytes", s.MaxMessageBytes, 1024)
	v.atLeast("smtp.max_recipients", int64(s.MaxRecipients), 1)
	v.atLeast("smtp.max_connections", int64(s.MaxConnections), 1)
	v.positive("smtp.read_timeout", s.ReadTimeout)
	v.positive("smtp.write_timeout", s.WriteTimeout)
}

func (v *validator) relay() {
	r := v.c.Relay
	if v.oneOf("relay.mode", r.Mode, "smarthost", "mx", "dir") {
		switch r.Mode {
		case "smarthost":
			v.hostPort("relay.smarthost", r.Smarthost, []string{"relay.mode"}, `when relay.mode is "smarthost"`)
		case "dir":
			v.required("relay.dir", r.Dir, []string{"relay.mode"}, `when relay.mode is "dir"`)
		}
	}
	if r.Mode != "smarthost" && r.Smarthost != "" {
		v.hostPort("relay.smarthost", r.Smarthost, nil, "")
	}
	v.oneOf("relay.tls", r.TLS, "none", "opportunistic", "required")
	if (r.AuthUser == "") != (r.AuthPasswordFile == "") {
		missing := "relay.auth_password_file"
		if r.AuthUser == "" {
			missing = "relay.auth_user"
		}
		v.add(missing, []string{"relay.auth_user", "relay.auth_password_file"}, "is required when the other of auth_user/auth_password_file is set", "set both to authenticate to the smart host, or neither")
	}
	v.file("relay.auth_password_file", r.AuthPasswordFile)
	if r.TLS == "none" && r.AuthUser != "" && !v.ps.has("relay.tls") {
		v.add("relay.tls", []string{"relay.auth_user"}, `"none" with relay.auth_user set: the relay password would travel in plain text, which sealgate refuses, so every delivery would fail`,
			`set tls = "required" (the smart host's certificate is verified: trust its CA with relay.ca_files if it is not a public one), or remove auth_user and auth_password_file`)
	}
	for i, f := range r.CAFiles {
		key := indexKey("relay.ca_files", i)
		if !v.listedFile("relay.ca_files", i, f) {
			continue
		}
		if _, err := PEMCertificates(v.c.Path(f)); err != nil {
			v.add(key, nil, err.Error(), "name a PEM file holding the CA certificate(s) that issued the smart host's certificate (-----BEGIN CERTIFICATE-----)")
		}
	}
	if n := r.TLSServerName; n != "" && !isHostName(n) {
		v.add("relay.tls_server_name", nil, fmt.Sprintf("%q is not a host name", n), `the name the smart host's certificate carries, without port, e.g. "smtp.example.org"`)
	}
	if r.Resolver != "" {
		v.hostPort("relay.resolver", r.Resolver, nil, "")
	}
	if r.MXPort < 1 || r.MXPort > 65535 {
		v.add("relay.mx_port", nil, fmt.Sprintf("%d is not a port", r.MXPort), "leave it at 25 (MX hosts listen there); other ports are for tests")
	}
	v.atLeast("relay.max_connections", int64(r.MaxConnections), 1)
	v.atLeast("relay.max_connections_per_domain", int64(r.MaxConnectionsPerDomain), 1)
	if r.Mode == "mx" && r.MaxConnectionsPerDomain > r.MaxConnections && !v.ps.has("relay.max_connections") {
		v.add("relay.max_connections_per_domain", []string{"relay.max_connections"}, fmt.Sprintf("%d is more than relay.max_connections (%d)", r.MaxConnectionsPerDomain, r.MaxConnections), "use at most max_connections")
	}
	v.positive("relay.timeout", r.Timeout)
	v.positive("relay.tls_check_ttl", r.TLSCheckTTL)
	v.positive("relay.retry_for", r.RetryFor)
	v.positive("relay.retry_backoff", r.RetryBackoff)
	if r.RetryFor.Duration > 0 && r.RetryBackoff.Duration >= r.RetryFor.Duration && !v.ps.has("relay.retry_for") {
		v.add("relay.retry_backoff", []string{"relay.retry_for"}, fmt.Sprintf("%s is not shorter than relay.retry_for (%s): a temporary failure would bounce without a retry", r.RetryBackoff.Duration, r.RetryFor.Duration), `use e.g. "30s" (the default)`)
	}
}

func (v *validator) store() {
	s := v.c.Store
	if v.positive("store.lease_timeout", s.LeaseTimeout); s.LeaseTimeout.Duration > 0 && s.LeaseTimeout.Duration < 3*time.Second {
		v.add("store.lease_timeout", nil, fmt.Sprintf("%s is too short: a node renews its leases every third of it, and a busy database could make it lose them while it delivers (mail sent twice)", s.LeaseTimeout.Duration), `use e.g. "2m" (the default); "30s" at least for production`)
	}
	if v.oneOf("store.driver", s.Driver, "sqlite", "postgres") && s.Driver == "postgres" {
		switch {
		case s.DSN != "" && s.DSNFile != "":
			v.add("store.dsn_file", []string{"store.dsn"}, "is set together with store.dsn", "keep one: dsn_file when the connection string holds a password")
		case s.DSNFile != "":
			v.file("store.dsn_file", s.DSNFile)
		default:
			v.required("store.dsn", s.DSN, []string{"store.driver"}, `when store.driver is "postgres" (or store.dsn_file)`)
			if dsnHasPassword(s.DSN) {
				// The value itself is never repeated: it is the secret.
				v.c.warnings = append(v.c.warnings, Problem{Key: "store.dsn", Line: v.c.lines["store.dsn"],
					Message: "holds a password in the config file", Hint: "move the connection string into a file readable only by sealgate and name it in store.dsn_file (or use ~/.pgpass)"})
			}
		}
	}
}

// dsnHasPassword tells whether a PostgreSQL connection string (URL or
// key=value form) carries a password.
func dsnHasPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		_, set := u.User.Password()
		return set || u.Query().Has("password")
	}
	for _, f := range strings.Fields(dsn) {
		if k, _, ok := strings.Cut(f, "="); ok && strings.TrimSpace(k) == "password" {
			return true
		}
	}
	return false
}

func (v *validator) pki() {
	p := v.c.PKI
	if v.oneOf("pki.issuer", p.Issuer, "embedded", "stepca") && p.Issuer == "stepca" {
		near := []string{"pki.stepca", "pki.issuer"}
		why := `when pki.issuer is "stepca"`
		s := p.StepCA
		if s.URL == "" {
			v.required("pki.stepca.url", "", near, why)
		} else if u, err := url.Parse(s.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			v.add("pki.stepca.url", nil, fmt.Sprintf("%q is not an https URL", s.URL), `write the CA's address, e.g. "https://ca.example.org:9000"`)
		}
		v.required("pki.stepca.root_file", s.RootFile, near, why)
		v.required("pki.stepca.provisioner", s.Provisioner, near, why)
		v.required("pki.stepca.provisioner_password_file", s.ProvisionerPasswordFile, near, why)
	}
	v.file("pki.stepca.root_file", p.StepCA.RootFile)
	v.file("pki.stepca.provisioner_password_file", p.StepCA.ProvisionerPasswordFile)
	v.oneOf("pki.key_type", p.KeyType, "rsa2048", "rsa3072", "rsa4096", "p256", "p384")
	v.positive("pki.validity", p.Validity)
	v.positive("pki.renew_before", p.RenewBefore)
	if p.Validity.Duration > 0 && p.RenewBefore.Duration >= p.Validity.Duration && !v.ps.has("pki.validity") {
		v.add("pki.renew_before", []string{"pki.validity"}, fmt.Sprintf("%s is not shorter than pki.validity (%s): every certificate would be renewed at once", p.RenewBefore.Duration, p.Validity.Duration), "make renew_before a fraction of validity, e.g. 720h for 8760h")
	}
	// The master key file may be absent: it is created on first start.
	v.required("pki.master_key_file", p.MasterKeyFile, nil, "(it encrypts private keys at rest)")
	v.positive("pki.sync_interval", p.SyncInterval)
}

func (v *validator) users() {
	u := v.c.Users
	if v.oneOf("users.source", u.Source, "static", "ldap") && u.Source == "ldap" {
		near := []string{"users.ldap", "users.source"}
		v.required("users.ldap.url", u.LDAP.URL, near, `when users.source is "ldap"`)
		v.required("users.ldap.base_dn", u.LDAP.BaseDN, near, `when users.source is "ldap"`)
	}
	for i, g := range u.Groups {
		if strings.TrimSpace(g) == "" {
			v.add(indexKey("users.groups", i), []string{"users.groups"}, "group name is empty", "remove it or name a group")
		}
	}
	seen := map[string]int{}
	for i, su := range u.Static {
		key := indexKey("users.static", i)
		if su.Email == "" {
			v.add(key+".email", nil, "is required for each user", `set email = "user@example.org"`)
		} else if v.emailAddr(key+".email", su.Email) {
			lower := strings.ToLower(su.Email)
			if j, dup := seen[lower]; dup {
				v.add(key+".email", nil, fmt.Sprintf("%q is listed twice (also users.static[%d])", su.Email, j), "list each user once; extra addresses go in aliases")
			}
			seen[lower] = i
		}
		for j, a := range su.Aliases {
			v.emailAddr(indexKey(key+".aliases", j), a)
		}
	}
	l := u.LDAP
	if l.URL != "" {
		v.ldapURL("users.ldap.url", l.URL)
		v.ldapTransport("users.ldap", ldapTransportKeys{url: l.URL, bindDN: l.BindDN, startTLS: l.StartTLS, allowPlaintextBind: l.AllowPlaintextBind})
	}
	if l.BindDN != "" && l.BindPasswordFile == "" {
		v.add("users.ldap.bind_password_file", []string{"users.ldap.bind_dn"}, "is required when users.ldap.bind_dn is set", "put the bind password in a file readable only by sealgate and name it here")
	}
	v.file("users.ldap.bind_password_file", l.BindPasswordFile)
	v.file("users.ldap.ca_file", l.CAFile)
	v.positive("users.ldap.timeout", l.Timeout)
	v.forest(l)
}

// forest checks users.ldap.global_catalog and [[users.ldap.domains]]:
// the same transport rules as users.ldap.url (starttls upgrades every
// ldap:// URL of users.ldap; a bind over ldap:// without it is refused
// unless allow_plaintext_bind), each domain once, with a DN.
func (v *validator) forest(l UsersLDAP) {
	plain := func(key, val string) {
		u, err := url.Parse(val)
		if err != nil || u.Scheme != "ldap" || l.StartTLS || l.BindDN == "" || l.AllowPlaintextBind {
			return
		}
		v.add(key, []string{"users.ldap.bind_dn"}, fmt.Sprintf("%q without users.ldap.starttls would send the password of users.ldap.bind_dn in clear text", val),
			`use ldaps:// (global catalog: port 3269, DC: 636), or set users.ldap.starttls = true; allow_plaintext_bind = true only for a directory on this host`)
	}
	if l.GlobalCatalog != "" {
		v.ldapURL("users.ldap.global_catalog", l.GlobalCatalog)
		plain("users.ldap.global_catalog", l.GlobalCatalog)
	} else if len(l.Domains) > 0 && v.c.Users.Source == "ldap" {
		v.add("users.ldap.domains", []string{"users.ldap"}, "is set but users.ldap.global_catalog is not",
			`other domains are read only for members found through the global catalog: set global_catalog = "ldaps://gc.example.org:3269"`)
	}
	seen := map[string]string{}
	if dn, err := ldap.ParseDN(l.BaseDN); err == nil && l.BaseDN != "" {
		seen[canonicalDN(dn)] = "users.ldap.base_dn"
	}
	for i, d := range l.Domains {
		key := indexKey("users.ldap.domains", i)
		if strings.TrimSpace(d.BaseDN) == "" {
			v.add(key+".base_dn", []string{key}, "is required for each domain", `set base_dn = "DC=emea,DC=example,DC=org" (the domain's naming context)`)
		} else if dn, err := ldap.ParseDN(d.BaseDN); err != nil {
			v.add(key+".base_dn", []string{key}, fmt.Sprintf("%q is not a DN", d.BaseDN), `write the domain's naming context, e.g. "DC=emea,DC=example,DC=org"`)
		} else if other, dup := seen[canonicalDN(dn)]; dup {
			v.add(key+".base_dn", []string{key}, fmt.Sprintf("%q is also %s", d.BaseDN, other), "list each domain once")
		} else {
			seen[canonicalDN(dn)] = key + ".base_dn"
		}
		if d.URL == "" {
			v.add(key+".url", []string{key}, "is required for each domain", `set url = "ldaps://dc1.emea.example.org:636" (a DC of that domain)`)
		} else {
			v.ldapURL(key+".url", d.URL)
			plain(key+".url", d.URL)
		}
	}
}

// canonicalDN compares DNs the way a directory does: types and values
// case-insensitively, spaces around separators ignored.
func canonicalDN(dn *ldap.DN) string {
	var parts []string
	for _, rdn := range dn.RDNs {
		var as []string
		for _, a := range rdn.Attributes {
			as = append(as, strings.ToLower(a.Type)+"="+ldap.EscapeDN(strings.ToLower(a.Value)))
		}
		slices.Sort(as)
		parts = append(parts, strings.Join(as, "+"))
	}
	return strings.Join(parts, ",")
}

func (v *validator) keyservers() {
	names := map[string]int{}
	for i, k := range v.c.Keyservers {
		key := indexKey("keyservers", i)
		if k.Name == "" {
			v.add(key+".name", nil, "is required for each keyserver", `name it, e.g. name = "partners"; lookups report where a certificate came from by this name`)
		} else if j, dup := names[k.Name]; dup {
			v.add(key+".name", nil, fmt.Sprintf("%q is already the name of keyservers[%d]", k.Name, j), "give each keyserver its own name")
		} else {
			names[k.Name] = i
		}
		if k.URL == "" {
			v.add(key+".url", nil, "is required for each keyserver", `set url = "ldap://keys.example.org"`)
		} else {
			v.ldapURL(key+".url", k.URL)
			v.ldapTransport(key, ldapTransportKeys{url: k.URL, bindDN: k.BindDN, startTLS: k.StartTLS, allowPlaintextBind: k.AllowPlaintextBind})
		}
		if k.BaseDN == "" {
			v.add(key+".base_dn", nil, "is required for each keyserver", `set base_dn = "dc=example,dc=org"`)
		}
		if k.BindDN != "" && k.BindPasswordFile == "" {
			v.add(key+".bind_password_file", []string{key + ".bind_dn"}, "is required when bind_dn is set", "put the bind password in a file readable only by sealgate and name it here")
		}
		v.file(key+".bind_password_file", k.BindPasswordFile)
		v.positive(key+".timeout", k.Timeout)
	}
}

func (v *validator) trust() {
	t := v.c.Trust
	v.oneOf("trust.revocation", t.Revocation, "soft-fail", "hard-fail")
	for i, f := range t.CAFiles {
		v.listedFile("trust.ca_files", i, f)
	}
}

// listedFile checks entry i of the file list listKey like file does, and
// says whether it passed.
func (v *validator) listedFile(listKey string, i int, f string) bool {
	key := indexKey(listKey, i)
	if f == "" {
		v.add(key, []string{listKey}, "path is empty", "remove it or name a PEM file")
		return false
	}
	v.file(key, f)
	return !v.ps.has(key)
}

// isHostName says whether name is a DNS name or an IP address (no port,
// no wildcard), as a certificate's subjectAltName carries it.
func isHostName(name string) bool {
	if net.ParseIP(name) != nil {
		return true
	}
	return !strings.ContainsAny(name, " \t/@:*") && !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, ".") && !strings.Contains(name, "..")
}

func (v *validator) policy() {
	p := v.c.Policy
	for i, d := range p.InternalDomains {
		v.domain(indexKey("policy.internal_domains", i), d, false)
	}
	if len(p.Rules) == 0 {
		v.add("policy.rules", []string{"policy"}, "is empty: no rule would decide anything", "add at least one [[policy.rules]] (a last rule without conditions catches everything)")
	}
	names := map[string]int{}
	for i, r := range p.Rules {
		key := indexKey("policy.rules", i)
		switch j, dup := names[r.Name]; {
		case strings.TrimSpace(r.Name) == "":
			v.add(key+".name", nil, "is required for each rule", "name it: decisions and `policy explain` report the rule by name")
		case dup:
			v.add(key+".name", nil, fmt.Sprintf("%q is already the name of policy.rules[%d]", r.Name, j), "give each rule its own name")
		default:
			names[r.Name] = i
		}
		v.oneOf(key+".sign", r.Sign, "always", "if-key", "never")
		v.oneOf(key+".encrypt", r.Encrypt, "none", "smime", "smime-or-pdf", "pdf", "smime-required")
		v.oneOf(key+".on_failure", r.OnFailure, "hold", "bounce", "plain")
		v.oneOf(key+".tls", r.TLS, "none", "opportunistic", "required", "verified", "dane")
		if r.TLSFallback != "" { // empty: hold, unless tls asks for nothing
			v.oneOf(key+".tls_fallback", r.TLSFallback, "hold", "pdf", "bounce")
		}
		if r.TLS == "dane" && v.c.Relay.Mode != "mx" {
			v.add(key+".tls", nil, fmt.Sprintf(`tls = "dane" with relay.mode = %q: DANE is checked against the recipient's own MX hosts`, v.c.Relay.Mode), `set relay.mode = "mx", or use tls = "verified" (the smart host's certificate verified)`)
		}
		for j, d := range r.SenderDomain {
			v.domain(indexKey(key+".sender_domain", j), d, true)
		}
		for j, d := range r.RecipientDomain {
			v.domain(indexKey(key+".recipient_domain", j), d, true)
		}
		for j, h := range r.Header {
			if name, _, ok := strings.Cut(h, ":"); !ok || strings.TrimSpace(name) == "" {
				v.add(indexKey(key+".header", j), []string{key + ".header"}, fmt.Sprintf("%q is not \"Name: value\"", h), `write e.g. "X-Classification: Confidential"`)
			}
		}
		for j, h := range r.HeaderMatch {
			name, expr, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(name) == "" {
				v.add(indexKey(key+".header_match", j), []string{key + ".header_match"}, fmt.Sprintf("%q is not \"Name: regexp\"", h), `write e.g. "Subject: (?i)invoice"`)
				continue
			}
			if _, err := regexp.Compile(strings.TrimSpace(expr)); err != nil {
				v.add(indexKey(key+".header_match", j), []string{key + ".header_match"}, fmt.Sprintf("bad regular expression: %v", err), "use Go (RE2) syntax")
			}
		}
		if r.StripSubjectTag && r.SubjectTag == "" {
			v.add(key+".strip_subject_tag", nil, "is set but subject_tag is empty", "set subject_tag, e.g. \"[secure]\", or remove strip_subject_tag")
		}
		if r.MinSize < 0 {
			v.add(key+".min_size", nil, "must not be negative", "use 0 or more bytes")
		}
		if r.MaxSize < 0 {
			v.add(key+".max_size", nil, "must not be negative", "use 0 (no limit) or more bytes")
		}
		v.file(key+".recipient_domain_file", r.RecipientDomainFile)
	}
}

func (v *validator) pdf() {
	p := v.c.PDF
	if len(p.Password) == 0 {
		v.add("pdf.password", []string{"pdf"}, "is empty: no way to choose a PDF password", `list the sources in order, e.g. ["subject", "preset", "generated-to-sender"]`)
	}
	seen := map[string]bool{}
	for i, m := range p.Password {
		key := indexKey("pdf.password", i)
		if !slices.Contains([]string{"subject", "preset", "generated-to-sender", "portal"}, m) {
			// The value is not repeated: it may be a password written here by mistake.
			v.add(key, []string{"pdf.password"}, "is not a password source", "use subject, preset, generated-to-sender or portal (this key lists where passwords come from, never a password itself)")
			continue
		}
		if seen[m] {
			v.add(key, []string{"pdf.password"}, fmt.Sprintf("%q is listed twice", m), "list each source once")
		}
		seen[m] = true
	}
	if seen["subject"] && strings.TrimSpace(p.SubjectTag) == "" {
		v.add("pdf.subject_tag", []string{"pdf.password"}, `is required when pdf.password includes "subject"`, `set the tag senders write before the password, e.g. "[pw:"`)
	}
	if seen["portal"] {
		v.positive("pdf.portal_token_ttl", p.PortalTokenTTL)
		v.positive("pdf.portal_reply_ttl", p.PortalReplyTTL)
	}
	v.oneOf("pdf.language", p.Language, "en", "de")
	if p.AttachmentName == "" || strings.ContainsAny(p.AttachmentName, `/\`) || !strings.HasSuffix(strings.ToLower(p.AttachmentName), ".pdf") {
		v.add("pdf.attachment_name", nil, fmt.Sprintf("%q is not a PDF file name", p.AttachmentName), `a plain name ending in .pdf, e.g. "message.pdf"`)
	}
	if p.PasswordLength < 12 || p.PasswordLength > 128 {
		v.add("pdf.password_length", nil, fmt.Sprintf("%d is outside 12..128", p.PasswordLength), "generated passwords need at least 12 characters to resist guessing; 20 is the default")
	}
	// 8 is pdfmail.LeastMinPasswordLength (config sits below pdfmail).
	if p.MinPasswordLength < 8 {
		v.add("pdf.min_password_length", nil, fmt.Sprintf("%d is too short", p.MinPasswordLength), "a PDF that has left can be attacked offline without limit: use 8 or more (10 is the default)")
	}
	v.dir("pdf.template_dir", p.TemplateDir)
	v.file("pdf.font_file", p.FontFile)
	if p.FontFile != "" {
		v.c.warnings = append(v.c.warnings, Problem{Key: "pdf.font_file", Line: v.c.lines["pdf.font_file"],
			Message: "is deprecated: the font is now added to the fallback chain after the built-in font (it no longer replaces it)", Hint: "list the file in pdf.fonts instead"})
	}
	for i, f := range p.Fonts {
		key := fmt.Sprintf("pdf.fonts[%d]", i)
		if f == "" {
			v.add(key, nil, "is empty", "name a TrueType font file or a directory of them")
			continue
		}
		if _, err := os.Stat(v.c.Path(f)); err != nil {
			v.add(key, nil, fmt.Sprintf("cannot use %s: %v", v.c.Path(f), unwrapPathError(err)), "name a TrueType font file or a directory of them (relative paths are relative to the config file's directory)")
		}
	}
}

func (v *validator) http() {
	v.listenAddr("http.listen", v.c.HTTP.Listen)
	for i, o := range v.c.HTTP.CORSOrigins {
		key := fmt.Sprintf("http.cors_origins[%d]", i)
		if msg := checkOrigin(o); msg != "" {
			v.add(key, nil, fmt.Sprintf("%q %s", o, msg), "write the add-in's origin exactly as the browser sends it, e.g. \"https://addin.example.org\" (no path, no wildcard)")
		} else if slices.Contains(v.c.HTTP.CORSOrigins[:i], o) {
			v.add(key, nil, fmt.Sprintf("%q is listed twice", o), "list each origin once")
		}
	}
}

// checkOrigin accepts a web origin as browsers send it in the Origin
// header: http or https, a host, an optional port, nothing else.
func checkOrigin(o string) string {
	if o == "*" || o == "null" {
		return "would let any page use the API with a token it got hold of"
	}
	u, err := url.Parse(o)
	switch {
	case err != nil || u.Host == "":
		return "is not an origin (scheme://host[:port])"
	case u.Scheme != "https" && u.Scheme != "http":
		return "must use http or https"
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "/"):
		return "is not an origin: no user, path, query or trailing slash"
	case o != strings.ToLower(o):
		return "must be lower case (browsers send origins in lower case)"
	}
	return ""
}

// portal checks [portal] and the deprecated pdf.portal_url (whose value
// applyDependentDefaults has copied into portal.url when that was empty).
func (v *validator) portal() {
	p, usesPortal := v.c.Portal, slices.Contains(v.c.PDF.Password, "portal")
	if old := v.c.PDF.PortalURL; old != "" {
		if v.c.lines["portal.url"] > 0 && old != p.URL {
			v.add("pdf.portal_url", nil, "differs from portal.url, which replaces it", "remove pdf.portal_url")
		} else {
			v.c.warnings = append(v.c.warnings, Problem{Key: "pdf.portal_url", Line: v.c.lines["pdf.portal_url"],
				Message: "is deprecated: portal.url replaces it (its value is used for now)", Hint: "move the value to url in [portal]"})
		}
	}
	key := "portal.url"
	if v.c.lines["portal.url"] == 0 && v.c.lines["pdf.portal_url"] > 0 {
		key = "pdf.portal_url"
	}
	if usesPortal && p.URL == "" {
		v.add("portal.url", []string{"portal", "pdf.password"}, `is required when pdf.password includes "portal"`, `set the https address recipients open, e.g. url = "https://secure.example.org" in [portal]`)
	}
	if p.URL != "" {
		if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			v.add(key, nil, fmt.Sprintf("%q is not an http(s) URL", p.URL), `write e.g. "https://secure.example.org" (no query, no user)`)
		}
	}
	if usesPortal {
		v.listenAddr("portal.listen", p.Listen)
		if p.Listen != "" && p.Listen == v.c.HTTP.Listen && !strings.HasSuffix(p.Listen, ":0") {
			v.add("portal.listen", []string{"portal"}, "is the same address as http.listen", "the portal faces the internet and serves only recipient pages: give it its own address")
		}
	}
	if (p.TLSCertFile == "") != (p.TLSKeyFile == "") {
		v.add("portal.tls_key_file", []string{"portal.tls_cert_file", "portal"}, "tls_cert_file and tls_key_file go together", "set both, or neither for a self-signed certificate under data_dir")
	}
	v.file("portal.tls_cert_file", p.TLSCertFile)
	v.file("portal.tls_key_file", p.TLSKeyFile)
}

func (v *validator) events() {
	if v.ps.has("events.retention") {
		return
	}
	if v.c.Events.Retention.Duration <= 0 {
		v.add("events.retention", nil, fmt.Sprintf("%q must be longer than zero", v.c.Events.Retention.Duration),
			`delivery events are pruned after this long: use e.g. "90d" (the SOC's reach back)`)
	}
}

func (v *validator) log() {
	v.oneOf("log.level", v.c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", v.c.Log.Format, "text", "json")
}
