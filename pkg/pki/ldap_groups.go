package pki

import (
	"context"
	"fmt"
	"slices"

	"github.com/go-ldap/ldap/v3"
)

// GroupMemberships reads, for every entry matching the user filter, the
// groups under the group base that contain it directly or through nested
// groups, so policy rules with sender_group can be evaluated for any sender
// (not only members of users.groups). The map is keyed by every address of
// the entry (mail and smtp: proxyAddresses, lower case); each value lists
// the groups' cn values (and sAMAccountName on AD) and DNs, sorted. A
// sender absent from the map is in no group.
//
// The whole group graph is read in one paged search and walked here: one
// read per refresh serves every sender. On AD the edges come from memberOf
// of the users and groups instead of member of the groups: AD returns at
// most 1,500 values of a multi-valued attribute (MaxValRange) unless they
// are fetched by range, so a 3,000-member group read through member would
// silently lose half its members, and their sender_group rules with them.
// Nobody is in 1,500 groups. (Other servers are read through member,
// which has the same limit only where the server imposes one.)
//
// With a global catalog (an AD forest) the same read goes to the GC, and
// users are searched in the whole forest (base ""): memberOf there holds
// the universal groups of every domain, so a sender from another domain
// in a universal group is found. Addresses come from the GC's copy
// (mail and proxyAddresses are in its partial attribute set); nothing
// here decides about certificates.
func (d *LDAPDirectory) GroupMemberships(ctx context.Context) (map[string][]string, error) {
	src, userBase := d, d.cfg.BaseDN
	if d.forest != nil {
		src, userBase = d.forest.gc, ""
	}
	var out map[string][]string
	err := src.withConn(ctx, func(conn *ldap.Conn) error {
		var err error
		out, err = src.groupMemberships(conn, userBase)
		return err
	})
	return out, err
}

func (d *LDAPDirectory) groupMemberships(conn *ldap.Conn, userBase string) (map[string][]string, error) {
	isAD, err := d.isActiveDirectory(conn)
	if err != nil {
		return nil, err
	}
	groupAttrs := []string{"cn", "member", "uniqueMember"}
	userAttrs := []string{"mail", "proxyAddresses"}
	if isAD {
		groupAttrs = []string{"cn", "sAMAccountName", "memberOf"}
		userAttrs = append(userAttrs, "memberOf")
	}
	gres, err := conn.SearchWithPaging(ldap.NewSearchRequest(d.cfg.GroupBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, groupObjectClassAny, groupAttrs, nil), ldapPageSize)
	if err != nil {
		return nil, fmt.Errorf("reading groups under %s: %w", d.cfg.GroupBaseDN, err)
	}
	// parents: normalised DN of a member -> normalised DNs of the groups
	// listing it; names: normalised group DN -> its cn values and DN.
	parents := map[string][]string{}
	names := map[string][]string{}
	for _, e := range gres.Entries {
		g := normDN(e.DN)
		names[g] = append(e.GetAttributeValues("cn"), e.DN)
		if isAD {
			names[g] = append(names[g], e.GetAttributeValues("sAMAccountName")...)
			for _, p := range e.GetAttributeValues("memberOf") {
				parents[g] = append(parents[g], normDN(p))
			}
			continue
		}
		for _, m := range append(e.GetAttributeValues("member"), e.GetAttributeValues("uniqueMember")...) {
			n := normDN(m)
			parents[n] = append(parents[n], g)
		}
	}
	ures, err := conn.SearchWithPaging(ldap.NewSearchRequest(userBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, d.cfg.UserFilter, userAttrs, nil), ldapPageSize)
	if err != nil {
		return nil, fmt.Errorf("searching users under %q on %s with %s: %w", userBase, d.cfg.URL, d.cfg.UserFilter, err)
	}
	if isAD {
		for _, e := range ures.Entries {
			u := normDN(e.DN)
			for _, p := range e.GetAttributeValues("memberOf") {
				parents[u] = append(parents[u], normDN(p))
			}
		}
	}
	out := map[string][]string{}
	for _, e := range ures.Entries {
		u, ok := userFromEntry(e)
		if !ok {
			continue
		}
		var groups []string
		seen := map[string]bool{}
		queue := slices.Clone(parents[normDN(e.DN)])
		for len(queue) > 0 {
			g := queue[0]
			queue = queue[1:]
			if seen[g] {
				continue // cycles in the group graph end here
			}
			seen[g] = true
			groups = append(groups, names[g]...)
			queue = append(queue, parents[g]...)
		}
		if len(groups) == 0 {
			continue
		}
		slices.Sort(groups)
		groups = slices.Compact(groups)
		for _, a := range u.Addresses() {
			out[a] = groups
		}
	}
	return out, nil
}
