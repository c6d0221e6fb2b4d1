package pki

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// An AD forest: several domains, each with its own DCs, one global
// catalog (GC) holding a partial copy of every domain's objects. Group
// membership across domains (a universal group in one domain with
// members from another) is only visible in full in the GC, so nesting is
// resolved there; but the GC holds only the partial attribute set and is
// read-only, so each member's own attributes (userAccountControl,
// accountExpires, certificates, msExch*) are read from, and certificates
// published to, a DC of the member's own domain.
//
// Which DC serves which domain is configured ([[users.ldap.domains]]),
// not looked up in DNS (_ldap._tcp.<domain> SRV records): the gateway
// binds with the service account's password, and a DNS answer must not
// decide where that password goes; firewalls between a gateway and DCs
// are also opened per host. A member in a domain without a configured
// DC is an error naming the DN and the entry to add: nobody is issued
// or revoked until the admin decides.

// forest holds the GC connection and the connections to the other
// domains. The home domain (users.ldap.url and base_dn) is the
// LDAPDirectory itself.
type forest struct {
	gc      *LDAPDirectory
	domains []forestDomain // the other domains, as configured
}

type forestDomain struct {
	base []string // normDN of BaseDN, split into RDNs, leaf first
	dir  *LDAPDirectory
}

// Object classes and attributes read from the global catalog.
const (
	attrObjectSid             = "objectSid"
	attrSAMAccountType        = "sAMAccountType"
	classForeignSecurityPrinc = "foreignSecurityPrincipal"
)

func newForest(cfg LDAPConfig) (*forest, error) {
	if cfg.GlobalCatalog == "" {
		return nil, errors.New("users.ldap.domains is set but users.ldap.global_catalog is not: other domains are only read for members found through the global catalog")
	}
	sub := func(key, rawURL, base string) (*LDAPDirectory, error) {
		if err := checkTransport(key, rawURL, cfg); err != nil {
			return nil, err
		}
		c := cfg
		c.URL, c.BaseDN, c.GlobalCatalog, c.Domains = rawURL, base, "", nil
		// StartTLS upgrades the ldap:// connections; ldaps:// ones
		// speak TLS from the start.
		u, _ := url.Parse(rawURL) // checkTransport parsed it
		c.StartTLS = cfg.StartTLS && u.Scheme == "ldap"
		return newDirectory(c), nil
	}
	gc, err := sub("users.ldap.global_catalog", cfg.GlobalCatalog, cfg.BaseDN)
	if err != nil {
		return nil, err
	}
	f := &forest{gc: gc}
	seen := map[string]int{strings.Join(splitDN(cfg.BaseDN), ","): -1}
	for i, dc := range cfg.Domains {
		key := fmt.Sprintf("users.ldap.domains[%d]", i)
		if _, err := ldap.ParseDN(dc.BaseDN); err != nil || strings.TrimSpace(dc.BaseDN) == "" {
			return nil, fmt.Errorf("%s.base_dn %q is not a DN: write the domain's naming context, e.g. \"DC=emea,DC=example,DC=org\"", key, dc.BaseDN)
		}
		norm := strings.Join(splitDN(dc.BaseDN), ",")
		if j, dup := seen[norm]; dup {
			other := "users.ldap.base_dn"
			if j >= 0 {
				other = fmt.Sprintf("users.ldap.domains[%d].base_dn", j)
			}
			return nil, fmt.Errorf("%s.base_dn %q is also %s: list each domain once", key, dc.BaseDN, other)
		}
		seen[norm] = i
		dir, err := sub(key+".url", dc.URL, dc.BaseDN)
		if err != nil {
			return nil, err
		}
		f.domains = append(f.domains, forestDomain{base: splitDN(dc.BaseDN), dir: dir})
	}
	return f, nil
}

// splitDN is normDN cut into its RDNs (leaf first), for suffix tests on
// RDN boundaries: "OU=Sales,DC=example,DC=org" lies under
// "DC=example,DC=org", "DC=badexample,DC=org" does not.
func splitDN(dn string) []string { return normRDNs(dn) }

// under says whether dn (split) lies at or below base (split).
func under(dn, base []string) bool {
	return len(dn) >= len(base) && slices.Equal(dn[len(dn)-len(base):], base)
}

// domainOf picks the directory serving dn: the configured domain whose
// base DN is the longest suffix of dn (a child domain's DN lies under
// its parent's). home is the directory for users.ldap.url/base_dn.
func (f *forest) domainOf(home *LDAPDirectory, dn string) (*LDAPDirectory, error) {
	parts := splitDN(dn)
	best, bestLen := (*LDAPDirectory)(nil), -1
	if b := splitDN(home.cfg.BaseDN); under(parts, b) {
		best, bestLen = home, len(b)
	}
	for _, d := range f.domains {
		if under(parts, d.base) && len(d.base) > bestLen {
			best, bestLen = d.dir, len(d.base)
		}
	}
	// A child domain's DNs lie under its parent's base DN, but the
	// parent's DCs do not hold them: the DC= part must be the same
	// domain, else the member would look deleted and lose its
	// certificate.
	if best == nil || !strings.EqualFold(normDN(domainPart(dn)), normDN(domainPart(best.cfg.BaseDN))) {
		return nil, fmt.Errorf("%s lies in no configured domain: add [[users.ldap.domains]] with base_dn = %q and url = a DC of that domain (ldaps://HOST:636)",
			dn, domainPart(dn))
	}
	return best, nil
}

// all is every domain's directory, home first.
func (f *forest) all(home *LDAPDirectory) []*LDAPDirectory {
	out := []*LDAPDirectory{home}
	for _, d := range f.domains {
		out = append(out, d.dir)
	}
	return out
}

// domainPart is the domain naming context of dn: its trailing DC= RDNs
// (the whole DN if it has none).
func domainPart(dn string) string {
	p, err := ldap.ParseDN(dn)
	if err != nil {
		return dn
	}
	i := len(p.RDNs)
	for i > 0 {
		r := p.RDNs[i-1]
		if len(r.Attributes) != 1 || !strings.EqualFold(r.Attributes[0].Type, "dc") {
			break
		}
		i--
	}
	if i == len(p.RDNs) {
		return dn
	}
	var parts []string
	for _, r := range p.RDNs[i:] {
		parts = append(parts, "DC="+ldap.EscapeDN(r.Attributes[0].Value))
	}
	return strings.Join(parts, ",")
}

// forestUsers: membership from the GC, attributes from each member's own
// domain. Any failure (GC or a domain DC unreachable, a member in an
// unconfigured domain, a domain's base DN missing on its DC) is an error
// for the whole read: membership unknown is not "not a member", and a
// partial list would revoke the members that could not be read.
func (d *LDAPDirectory) forestUsers(ctx context.Context) ([]User, error) {
	members, err := d.forest.members(ctx)
	if err != nil {
		return nil, err
	}
	byDomain := map[*LDAPDirectory][]string{}
	var unrouted []error
	for _, dn := range members {
		dom, err := d.forest.domainOf(d, dn)
		if err != nil {
			unrouted = append(unrouted, err)
			continue
		}
		byDomain[dom] = append(byDomain[dom], dn)
	}
	if len(unrouted) > 0 {
		return nil, fmt.Errorf("members of users.groups found in the global catalog cannot be read from their own domain; nothing is issued or revoked until they can: %w",
			errors.Join(unrouted...))
	}
	var out []User
	seen := map[string]bool{}
	now := time.Now()
	for _, dom := range d.forest.all(d) {
		dns := byDomain[dom]
		if len(dns) == 0 {
			continue
		}
		users, err := dom.readMembers(ctx, dns, now)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			if !seen[u.Email] {
				seen[u.Email] = true
				out = append(out, u)
			}
		}
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Email, b.Email) })
	return out, nil
}

// members resolves users.groups in the GC and returns the DNs of the
// user accounts among their nested members, sorted. Foreign security
// principals (members from another forest, through a trust) are skipped
// with a warning naming the SID: they are not this organisation's users,
// and their attributes live in a directory sealgate does not read.
func (f *forest) members(ctx context.Context) ([]string, error) {
	gc := f.gc
	var out []string
	err := gc.withConn(ctx, func(conn *ldap.Conn) error {
		isAD, err := gc.isActiveDirectory(conn)
		if err != nil {
			return err
		}
		if !isAD {
			return fmt.Errorf("users.ldap.global_catalog %s is not an Active Directory global catalog (no LDAP_CAP_ACTIVE_DIRECTORY_OID in its root DSE)", gc.cfg.URL)
		}
		groupDNs, err := gc.resolveGroups(conn, true)
		if err != nil {
			return fmt.Errorf("global catalog %s: %w", gc.cfg.URL, err)
		}
		var ors strings.Builder
		for _, g := range groupDNs {
			fmt.Fprintf(&ors, "(memberOf:%s:=%s)", ruleInChain, ldap.EscapeFilter(g))
		}
		// Only what is classified below: user accounts and foreign
		// principals (the class narrows the candidates the server must
		// walk the chain for: on Samba about twice as fast as the rule alone).
		filter := fmt.Sprintf("(&(|(sAMAccountType=%d)(objectClass=%s))(|%s))", samNormalUserAccount, classForeignSecurityPrinc, ors.String())
		// Base "" with subtree scope: on a GC port that is the whole
		// forest (on a DC's own port it is an error, not an empty list).
		res, err := conn.SearchWithPaging(ldap.NewSearchRequest("", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			filter, []string{"objectClass", attrSAMAccountType, attrObjectSid}, nil), ldapPageSize)
		if err != nil {
			return fmt.Errorf("resolving nested members of users.groups in the global catalog %s: %w", gc.cfg.URL, err)
		}
		for _, e := range res.Entries {
			switch {
			case slices.ContainsFunc(e.GetAttributeValues("objectClass"), func(c string) bool { return strings.EqualFold(c, classForeignSecurityPrinc) }):
				sid, err := formatSID(e.GetRawAttributeValue(attrObjectSid))
				if err != nil {
					sid = "unreadable objectSid (" + err.Error() + ")"
				}
				gc.cfg.Log.Warn("skipping a member of users.groups from another forest (foreign security principal): not a user of this organisation",
					"sid", sid, "dn", e.DN)
			case e.GetAttributeValue(attrSAMAccountType) == strconv.Itoa(samNormalUserAccount):
				out = append(out, e.DN)
			}
			// Nested groups, contacts and computers: not certificate holders.
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// readMembers reads the entries dns (all in this domain) from this
// domain's DC, memberBatch at a time: a subtree search for those DNs
// (distinguishedName on AD, entryDN elsewhere) filtered by the user
// filter (and on AD by sAMAccountType), so a contact or a filtered-out
// entry yields nothing. An entry the DC does not have (deleted after the
// GC replicated) is left out. The domain's base DN must exist on the DC:
// a url pointing at the wrong domain's DC would otherwise make every
// member "deleted" and revoke them all.
func (d *LDAPDirectory) readMembers(ctx context.Context, dns []string, now time.Time) ([]User, error) {
	var out []User
	err := d.withConn(ctx, func(conn *ldap.Conn) error {
		out = out[:0]
		isAD, err := d.isActiveDirectory(conn)
		if err != nil {
			return err
		}
		if _, err := conn.Search(ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{"1.1"}, nil)); err != nil {
			return fmt.Errorf("domain %s on %s: reading its base DN: %w (is url a DC of this domain?)", d.cfg.BaseDN, d.cfg.URL, err)
		}
		filter, dnAttr := d.cfg.UserFilter, "entryDN"
		if isAD {
			filter, dnAttr = fmt.Sprintf("(&%s(sAMAccountType=%d))", filter, samNormalUserAccount), "distinguishedName"
		}
		attrs := d.userAttributes(isAD)
		for batch := range slices.Chunk(dns, memberBatch) {
			var ors strings.Builder
			for _, dn := range batch {
				fmt.Fprintf(&ors, "(%s=%s)", dnAttr, ldap.EscapeFilter(dn))
			}
			f := fmt.Sprintf("(&%s(|%s))", filter, ors.String())
			res, err := conn.Search(ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, f, attrs, nil))
			if err != nil {
				return fmt.Errorf("reading %d members under %s from %s: %w", len(batch), d.cfg.BaseDN, d.cfg.URL, err)
			}
			for _, e := range res.Entries {
				u, ok, err := d.accountUser(e, isAD, now)
				if err != nil {
					return fmt.Errorf("reading users of domain %s: %w", d.cfg.BaseDN, err)
				}
				if ok {
					out = append(out, u)
				}
			}
		}
		return nil
	})
	return out, err
}

// memberBatch is how many member DNs one search asks for: few enough to
// keep the filter small (AD's default MaxQueryDuration and filter size
// limits are far away), many enough that 3,000 members take 60 searches.
const memberBatch = 50

// formatSID renders a binary objectSid (revision, sub-authority count,
// 48-bit big-endian identifier authority, little-endian 32-bit
// sub-authorities) as S-1-5-21-...; anything else is an error, so what
// reaches the log is digits and dashes only.
func formatSID(b []byte) (string, error) {
	if len(b) < 8 {
		return "", fmt.Errorf("%d bytes, a SID has at least 8", len(b))
	}
	n := int(b[1])
	if b[0] != 1 || n > 15 || len(b) != 8+4*n {
		return "", fmt.Errorf("revision %d with %d sub-authorities in %d bytes is not a SID", b[0], n, len(b))
	}
	var auth uint64
	for _, c := range b[2:8] {
		auth = auth<<8 | uint64(c)
	}
	var s strings.Builder
	fmt.Fprintf(&s, "S-1-%d", auth)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&s, "-%d", binary.LittleEndian.Uint32(b[8+4*i:]))
	}
	return s.String(), nil
}
