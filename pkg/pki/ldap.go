package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/smallstep/pkcs7"
)

// LDAP attribute names and OIDs (AD's where AD differs).
const (
	attrUserCert      = "userCertificate;binary"
	attrUserCertAD    = "userCertificate"
	attrSMIMECert     = "userSMIMECertificate"
	oidADCapability   = "1.2.840.113556.1.4.800"  // LDAP_CAP_ACTIVE_DIRECTORY_OID
	ruleInChain       = "1.2.840.113556.1.4.1941" // LDAP_MATCHING_RULE_IN_CHAIN
	uacAccountDisable = 0x2
	// samNormalUserAccount is sAMAccountType SAM_NORMAL_USER_ACCOUNT.
	samNormalUserAccount = 0x30000000
	ldapPageSize         = 500
	defaultLDAPTimeout   = 10 * time.Second
	groupObjectClassAny  = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))"
)

// LDAPConfig is [users.ldap] with the password already read from its file.
type LDAPConfig struct {
	URL          string
	BindDN       string
	BindPassword string
	BaseDN       string
	UserFilter   string // e.g. (&(objectClass=person)(mail=*))
	GroupBaseDN  string // "" means BaseDN
	Groups       []string
	Timeout      time.Duration
	// TLS verifies the server for ldaps:// and for StartTLS.
	TLS *tls.Config
	// StartTLS upgrades an ldap:// connection to TLS before the bind.
	// A server that refuses the upgrade is an error, never a plain bind.
	StartTLS bool
	// AllowPlaintextBind permits a simple bind over ldap:// without
	// StartTLS (the password in clear text); without it such a
	// configuration is refused.
	AllowPlaintextBind bool
	// ReadPublished makes Users fetch userCertificate;binary
	// (userCertificate on AD) so rollouts can repair entries whose
	// published certificate is out of date.
	ReadPublished bool
	// GlobalCatalog, when set, is the AD forest's global catalog
	// (ldaps://HOST:3269, or ldap://HOST:3268 with StartTLS): group
	// membership is resolved there, across the forest, and each member
	// is read from the DC of its own domain (URL for BaseDN, Domains for
	// the others). Same credentials and TLS settings as URL.
	GlobalCatalog string
	// Domains are the forest's other domains whose users may be members
	// of users.groups: each member's DN picks the entry with the longest
	// matching BaseDN. Only used with GlobalCatalog.
	Domains []LDAPDomain
	// Log receives warnings (foreign security principals skipped);
	// nil is slog.Default().
	Log *slog.Logger
}

// LDAPDomain is one [[users.ldap.domains]] entry: a domain of the forest
// and a DC (or load balancer) serving it.
type LDAPDomain struct {
	BaseDN string
	URL    string
}

// LDAPDirectory is the LDAP/AD user source and certificate publisher. It
// is safe for concurrent use and keeps bound connections between
// operations (see ldap_pool.go); Close releases them.
type LDAPDirectory struct {
	cfg  LDAPConfig
	pool *connPool
	// kind caches what the server is (serverUnknown until asked): a
	// directory does not change product between two operations, and AD
	// differs in attribute names and in how nesting is resolved.
	kind atomic.Int32
	// forest is set with GlobalCatalog (see ldap_forest.go).
	forest *forest
}

// Server kinds cached in LDAPDirectory.kind.
const (
	serverUnknown int32 = iota
	serverLDAP
	serverAD
)

// NewLDAPDirectory checks the configuration and returns the directory.
func NewLDAPDirectory(cfg LDAPConfig) (*LDAPDirectory, error) {
	if cfg.URL == "" || cfg.BaseDN == "" {
		return nil, errors.New("users.ldap.url and users.ldap.base_dn are required")
	}
	if len(cfg.Groups) == 0 {
		return nil, errors.New("users.groups is empty: no one would get a certificate")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("users.ldap.url %q: %w", cfg.URL, err)
	}
	if cfg.StartTLS && u.Scheme != "ldap" {
		return nil, fmt.Errorf("users.ldap.starttls needs an ldap:// URL, not %q: remove starttls or use ldap://HOST:389", cfg.URL)
	}
	if err := checkTransport("users.ldap.url", cfg.URL, cfg); err != nil {
		return nil, err
	}
	if cfg.UserFilter == "" {
		cfg.UserFilter = "(&(objectClass=person)(mail=*))"
	}
	if _, err := ldap.CompileFilter(cfg.UserFilter); err != nil {
		return nil, fmt.Errorf("users.ldap.user_filter %q: %w", cfg.UserFilter, err)
	}
	if cfg.GroupBaseDN == "" {
		cfg.GroupBaseDN = cfg.BaseDN
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultLDAPTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	d := newDirectory(cfg)
	if cfg.GlobalCatalog != "" || len(cfg.Domains) > 0 {
		f, err := newForest(cfg)
		if err != nil {
			return nil, err
		}
		d.forest = f
	}
	return d, nil
}

func newDirectory(cfg LDAPConfig) *LDAPDirectory {
	d := &LDAPDirectory{cfg: cfg}
	d.pool = &connPool{dial: d.dial}
	return d
}

// checkTransport refuses a simple bind that would cross the wire in
// clear text: bind_dn over ldap:// without StartTLS, unless
// AllowPlaintextBind says the admin means it.
func checkTransport(key, rawURL string, cfg LDAPConfig) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%s %q: %w", key, rawURL, err)
	}
	if u.Scheme != "ldap" && u.Scheme != "ldaps" || u.Host == "" {
		return fmt.Errorf("%s %q is not an ldap:// or ldaps:// URL with a host", key, rawURL)
	}
	if u.Scheme == "ldap" && !cfg.StartTLS && cfg.BindDN != "" && !cfg.AllowPlaintextBind {
		return fmt.Errorf("%s %q: binding as %s without TLS would send its password in clear text: "+
			"use ldaps://HOST:636 or starttls = true, or allow_plaintext_bind = true for a directory on this host", key, rawURL, cfg.BindDN)
	}
	return nil
}

// Users returns enabled, unexpired members (direct or through nested
// groups) of the configured groups. On AD the server resolves nesting with
// LDAP_MATCHING_RULE_IN_CHAIN; elsewhere the group graph is read once and
// walked here (cycles are harmless). A configured group that does not
// exist is an error: an empty result would revoke everybody.
func (d *LDAPDirectory) Users(ctx context.Context) ([]User, error) {
	if d.forest != nil {
		return d.forestUsers(ctx)
	}
	var out []User
	err := d.withConn(ctx, func(conn *ldap.Conn) error {
		var err error
		out, err = d.users(conn)
		return err
	})
	return out, err
}

func (d *LDAPDirectory) users(conn *ldap.Conn) ([]User, error) {
	isAD, err := d.isActiveDirectory(conn)
	if err != nil {
		return nil, err
	}
	groupDNs, err := d.resolveGroups(conn, isAD)
	if err != nil {
		return nil, err
	}
	attrs := d.userAttributes(isAD)
	filter := d.cfg.UserFilter
	var members map[string]bool
	if isAD {
		filter = adMembersFilter(d.cfg.UserFilter, groupDNs)
	} else if members, err = d.nestedMembers(conn, groupDNs); err != nil {
		return nil, err
	}
	res, err := conn.SearchWithPaging(ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, filter, attrs, nil), ldapPageSize)
	if err != nil {
		return nil, fmt.Errorf("searching users under %s with %s: %w", d.cfg.BaseDN, filter, err)
	}
	var out []User
	seen := map[string]bool{}
	now := time.Now()
	for _, e := range res.Entries {
		if members != nil && !members[normDN(e.DN)] {
			continue
		}
		u, ok, err := d.accountUser(e, isAD, now)
		if err != nil {
			return nil, fmt.Errorf("reading users under %s: %w", d.cfg.BaseDN, err)
		}
		if !ok || seen[u.Email] {
			continue
		}
		seen[u.Email] = true
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Email, b.Email) })
	return out, nil
}

// userAttributes are what Users reads of each account.
func (d *LDAPDirectory) userAttributes(isAD bool) []string {
	attrs := []string{"mail", "proxyAddresses", "displayName", "cn", attrUserAccountControl, attrAccountExpires,
		attrRecipientTypeDetails, attrRemoteRecipientType}
	if d.cfg.ReadPublished {
		attrs = append(attrs, certAttribute(isAD))
	}
	return attrs
}

// accountUser turns a user entry into a User; ok is false for disabled
// person accounts and expired ones (left out, so the rollout revokes) and
// for entries without a usable address.
func (d *LDAPDirectory) accountUser(e *ldap.Entry, isAD bool, now time.Time) (User, bool, error) {
	kind, inactive, err := accountState(e, now)
	if err != nil || inactive {
		return User{}, false, err
	}
	u, ok := userFromEntry(e)
	if !ok {
		return User{}, false, nil
	}
	u.Kind = kind
	if d.cfg.ReadPublished {
		u.Published = e.GetRawAttributeValues(certAttribute(isAD))
		if u.Published == nil {
			u.Published = [][]byte{}
		}
	}
	return u, true, nil
}

// adMembersFilter restricts userFilter to user accounts (sAMAccountType
// SAM_NORMAL_USER_ACCOUNT: not contacts, which are people outside the
// organisation whose keys we must not hold, nor computers) that are
// members of any of the groups, nested at any depth
// (LDAP_MATCHING_RULE_IN_CHAIN), so AD does the whole walk in one paged
// search. Disabled accounts are included: a shared, room or equipment
// mailbox is a disabled account, and only its Exchange attributes, read
// by accountState, tell it from a person who left. (A filter on those
// attributes would depend on the Exchange schema being installed.)
func adMembersFilter(userFilter string, groupDNs []string) string {
	var ors strings.Builder
	for _, g := range groupDNs {
		fmt.Fprintf(&ors, "(memberOf:%s:=%s)", ruleInChain, ldap.EscapeFilter(g))
	}
	return fmt.Sprintf("(&%s(sAMAccountType=%d)(|%s))", userFilter, samNormalUserAccount, ors.String())
}

func userFromEntry(e *ldap.Entry) (User, bool) {
	var primary string
	var aliases []string
	if m, err := normalizeAddress(e.GetAttributeValue("mail")); err == nil {
		primary = m
	}
	for _, p := range e.GetAttributeValues("proxyAddresses") {
		if len(p) < 5 || !strings.EqualFold(p[:5], "smtp:") {
			continue // X500:, SIP: and friends are not mail addresses
		}
		a, err := normalizeAddress(p[5:])
		if err != nil {
			continue
		}
		if p[:5] == "SMTP:" && primary == "" {
			primary = a
		}
		aliases = append(aliases, a)
	}
	if primary == "" {
		return User{}, false
	}
	name := e.GetAttributeValue("displayName")
	if name == "" {
		name = e.GetAttributeValue("cn")
	}
	return User{Email: primary, Aliases: cleanAliases(primary, aliases), Name: name, DN: e.DN}, true
}

// isActiveDirectory asks the root DSE once per directory whether the
// server announces LDAP_CAP_ACTIVE_DIRECTORY_OID (Windows and Samba DCs).
func (d *LDAPDirectory) isActiveDirectory(conn *ldap.Conn) (bool, error) {
	switch d.kind.Load() {
	case serverAD:
		return true, nil
	case serverLDAP:
		return false, nil
	}
	res, err := conn.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"supportedCapabilities"}, nil))
	if err != nil {
		return false, fmt.Errorf("reading the root DSE of %s: %w", d.cfg.URL, err)
	}
	kind := serverLDAP
	for _, e := range res.Entries {
		if slices.Contains(e.GetAttributeValues("supportedCapabilities"), oidADCapability) {
			kind = serverAD
		}
	}
	d.kind.Store(kind)
	return kind == serverAD, nil
}

// certAttribute is where certificates are published: AD's schema has
// userCertificate as an octet string and rejects the ;binary transfer
// option (Samba: "attribute 'userCertificate;binary' ... was not found in
// the schema"), and a search for userCertificate;binary returns nothing
// there; RFC 4523 directories (OpenLDAP) require ;binary.
func certAttribute(isAD bool) string {
	if isAD {
		return attrUserCertAD
	}
	return attrUserCert
}

// resolveGroups turns users.groups entries (a CN or a full DN; on AD also
// the sAMAccountName, the "pre-Windows 2000" name admins see next to the
// CN) into DNs.
func (d *LDAPDirectory) resolveGroups(conn *ldap.Conn, isAD bool) ([]string, error) {
	var dns []string
	for _, g := range d.cfg.Groups {
		name := fmt.Sprintf("(cn=%s)", ldap.EscapeFilter(g))
		if isAD {
			name = fmt.Sprintf("(|(cn=%s)(sAMAccountName=%s))", ldap.EscapeFilter(g), ldap.EscapeFilter(g))
		}
		base, scope, filter := d.cfg.GroupBaseDN, ldap.ScopeWholeSubtree, fmt.Sprintf("(&%s%s)", groupObjectClassAny, name)
		if strings.Contains(g, "=") {
			base, scope, filter = g, ldap.ScopeBaseObject, groupObjectClassAny
		}
		res, err := conn.Search(ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 0, false, filter, []string{"cn"}, nil))
		if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return nil, fmt.Errorf("looking up group %q: %w", g, err)
		}
		if res == nil || len(res.Entries) == 0 {
			return nil, fmt.Errorf("group %q (users.groups) not found under %s: refusing to continue, an empty group would revoke its members", g, d.cfg.GroupBaseDN)
		}
		if len(res.Entries) > 1 {
			return nil, fmt.Errorf("group name %q is ambiguous (%d groups): give its DN in users.groups", g, len(res.Entries))
		}
		dns = append(dns, res.Entries[0].DN)
	}
	return dns, nil
}

// nestedMembers reads every group once and walks membership from the
// configured groups, returning the normalised DNs of non-group members.
func (d *LDAPDirectory) nestedMembers(conn *ldap.Conn, roots []string) (map[string]bool, error) {
	res, err := conn.SearchWithPaging(ldap.NewSearchRequest(d.cfg.GroupBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, groupObjectClassAny, []string{"member", "uniqueMember"}, nil), ldapPageSize)
	if err != nil {
		return nil, fmt.Errorf("reading groups under %s: %w", d.cfg.GroupBaseDN, err)
	}
	groups := map[string][]string{}
	for _, e := range res.Entries {
		groups[normDN(e.DN)] = append(e.GetAttributeValues("member"), e.GetAttributeValues("uniqueMember")...)
	}
	users := map[string]bool{}
	visited := map[string]bool{}
	queue := make([]string, 0, len(roots))
	for _, r := range roots {
		queue = append(queue, normDN(r))
	}
	for len(queue) > 0 {
		g := queue[0]
		queue = queue[1:]
		if visited[g] {
			continue
		}
		visited[g] = true
		for _, m := range groups[g] {
			n := normDN(m)
			if _, isGroup := groups[n]; isGroup {
				queue = append(queue, n)
			} else {
				users[n] = true
			}
		}
	}
	return users, nil
}

// normDN makes DNs comparable: attribute types and values lower-cased,
// spaces around separators dropped. Unparsable DNs are only lower-cased.
func normDN(dn string) string {
	return strings.Join(normRDNs(dn), ",")
}

// normRDNs is normDN's RDNs, leaf first; an unparsable DN is one
// lower-cased element.
func normRDNs(dn string) []string {
	p, err := ldap.ParseDN(dn)
	if err != nil {
		return []string{strings.ToLower(strings.TrimSpace(dn))}
	}
	var parts []string
	for _, rdn := range p.RDNs {
		var as []string
		for _, a := range rdn.Attributes {
			// Values re-escaped: "uid=a\\,dc=x" (one RDN) must not
			// collide with "uid=a,dc=x" (two RDNs).
			as = append(as, ldap.EscapeDN(strings.ToLower(a.Type))+"="+ldap.EscapeDN(strings.ToLower(a.Value)))
		}
		slices.Sort(as)
		parts = append(parts, strings.Join(as, "+"))
	}
	return parts
}

// Publish replaces the entry's userCertificate;binary (userCertificate on
// AD) and userSMIMECertificate (PKCS#7 certs-only, what Outlook reads)
// with certs.
func (d *LDAPDirectory) Publish(ctx context.Context, u User, certs []*x509.Certificate) error {
	if u.DN == "" {
		return fmt.Errorf("%s has no directory entry to publish to", u.Email)
	}
	if d.forest != nil {
		// Written to the DC of the user's own domain: the global
		// catalog is read-only.
		dom, err := d.forest.domainOf(d, u.DN)
		if err != nil {
			return fmt.Errorf("publishing for %s: %w", u.Email, err)
		}
		d = dom
	}
	return d.withConn(ctx, func(conn *ldap.Conn) error {
		isAD, err := d.isActiveDirectory(conn)
		if err != nil {
			return err
		}
		return writeCerts(conn, isAD, u.DN, certs)
	})
}

func writeCerts(conn *ldap.Conn, isAD bool, dn string, certs []*x509.Certificate) error {
	certAttr := certAttribute(isAD)
	req := ldap.NewModifyRequest(dn, nil)
	var ders []string
	var concat []byte
	for _, c := range certs {
		ders = append(ders, string(c.Raw))
		concat = append(concat, c.Raw...)
	}
	req.Replace(certAttr, ders)
	if len(certs) > 0 {
		p7, err := pkcs7.DegenerateCertificate(concat)
		if err != nil {
			return fmt.Errorf("building userSMIMECertificate: %w", err)
		}
		req.Replace(attrSMIMECert, []string{string(p7)})
	} else {
		req.Replace(attrSMIMECert, nil)
	}
	if err := conn.Modify(req); err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
			hint := "grant users.ldap.bind_dn write access to " + certAttr + " and " + attrSMIMECert + " of user entries"
			if isAD {
				// Cert Publishers may write userCertificate by AD's
				// defaults; userSMIMECertificate is never granted.
				hint = "add users.ldap.bind_dn to the Cert Publishers group and delegate it \"Write userSMIMECertificate\" on user objects"
			}
			return fmt.Errorf("writing certificates to %s: not allowed: %s: %w", dn, hint, err)
		}
		return fmt.Errorf("writing certificates to %s: %w", dn, err)
	}
	return nil
}

// Unpublish removes certs from the entry (or entries) holding email as
// mail or smtp: proxy address, keeping any other certificate there.
func (d *LDAPDirectory) Unpublish(ctx context.Context, email string, certs []*x509.Certificate) error {
	if d.forest == nil {
		return d.unpublish(ctx, email, certs)
	}
	// A user who left may have lived in any domain of the forest.
	var errs []error
	for _, dom := range d.forest.all(d) {
		errs = append(errs, dom.unpublish(ctx, email, certs))
	}
	return errors.Join(errs...)
}

func (d *LDAPDirectory) unpublish(ctx context.Context, email string, certs []*x509.Certificate) error {
	return d.withConn(ctx, func(conn *ldap.Conn) error {
		isAD, err := d.isActiveDirectory(conn)
		if err != nil {
			return err
		}
		certAttr := certAttribute(isAD)
		e := ldap.EscapeFilter(email)
		res, err := conn.Search(ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			fmt.Sprintf("(|(mail=%s)(proxyAddresses=smtp:%s))", e, e), []string{certAttr}, nil))
		if err != nil {
			return fmt.Errorf("finding %s to unpublish: %w", email, err)
		}
		for _, entry := range res.Entries {
			have := entry.GetRawAttributeValues(certAttr)
			var keep []*x509.Certificate
			changed := false
			for _, der := range have {
				if slices.ContainsFunc(certs, func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, der) }) {
					changed = true
					continue
				}
				if c, err := x509.ParseCertificate(der); err == nil {
					keep = append(keep, c)
				}
			}
			if !changed {
				continue
			}
			if err := writeCerts(conn, isAD, entry.DN, keep); err != nil {
				return err
			}
		}
		return nil
	})
}

var (
	_ UserSource = (*LDAPDirectory)(nil)
	_ Publisher  = (*LDAPDirectory)(nil)
)
