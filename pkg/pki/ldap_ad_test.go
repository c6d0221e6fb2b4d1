package pki_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/store"
)

// The AD test domain: 30 users, groups S/MIME Sales and S/MIME Eng under
// OU=Groups (configured), Contractors and Temps under OU=Nested (Eng ⊃
// Contractors ⊃ Temps), Others (not configured), a disabled member and a
// mail-enabled contact in Sales.
const (
	adPeople = "OU=People," + testpeer.SambaBaseDN
	adGroups = "OU=Groups," + testpeer.SambaBaseDN
	adNested = "OU=Nested," + testpeer.SambaBaseDN
)

func adUserDN(i int) string { return fmt.Sprintf("CN=User %02d,%s", i, adPeople) }
func adMail(i int) string   { return fmt.Sprintf("u%02d@example.test", i) }
func adAlias(i int) string  { return fmt.Sprintf("alias%02d@example.test", i) }
func adHasAlias(i int) bool { return i == 10 || i == 27 }
func adDisabled(i int) bool { return i == 3 }
func adEligible(i int) bool { return i >= 1 && i <= 28 && !adDisabled(i) }

// adMailboxes are Exchange mailboxes without a person behind them:
// disabled accounts that Exchange marks by type, in the group Mailboxes
// (OU=Nested), itself a member of S/MIME Sales. Each gets a certificate.
var adMailboxes = []struct {
	cn, mail, kind  string
	details, remote int64
}{
	{"Shared Claims", "claims@example.test", pki.KindShared, testpeer.ExchangeSharedMailbox, 0},
	{"Room Amstel", "room.amstel@example.test", pki.KindRoom, testpeer.ExchangeRoomMailbox, 0},
	// Moved to Exchange Online: msExchRemoteRecipientType 68
	// (Migrated | EquipmentMailbox), no on-premises type details.
	{"Beamer 1", "beamer1@example.test", pki.KindEquipment, 0, 68},
}

func adMailboxDN(cn string) string { return "CN=" + cn + "," + adPeople }

// adEligibleMails lists every address the rollout issues for, sorted.
func adEligibleMails() []string {
	var out []string
	for i := 1; i <= 30; i++ {
		if adEligible(i) {
			out = append(out, adMail(i))
		}
	}
	for _, m := range adMailboxes {
		out = append(out, m.mail)
	}
	slices.Sort(out)
	return out
}

func adGroupDN(cn string, ou string) string {
	return "CN=" + cn + "," + ou
}

func adDirectoryLDIF() string {
	var b strings.Builder
	for _, ou := range []string{adPeople, adGroups, adNested} {
		fmt.Fprintf(&b, "dn: %s\nobjectClass: organizationalUnit\n\n", ou)
	}
	for i := 1; i <= 30; i++ {
		u := testpeer.ADUser{DN: adUserDN(i), SAMAccountName: fmt.Sprintf("u%02d", i), Mail: adMail(i), Disabled: adDisabled(i)}
		if adHasAlias(i) {
			// The primary SMTP: address in upper case, as Exchange
			// tools write it; the alias; a non-mail proxy address.
			u.ProxyAddresses = []string{"SMTP:" + strings.ToUpper(adMail(i)), "smtp:" + adAlias(i), "X500:/o=Example/cn=u" + fmt.Sprint(i)}
		}
		b.WriteString(testpeer.UserLDIF(u))
	}
	var mailboxes []string
	for _, m := range adMailboxes {
		b.WriteString(testpeer.UserLDIF(testpeer.ADUser{DN: adMailboxDN(m.cn), SAMAccountName: strings.ReplaceAll(strings.ToLower(m.cn), " ", "-"),
			Mail: m.mail, Disabled: true, RecipientTypeDetails: m.details, RemoteRecipientType: m.remote}))
		mailboxes = append(mailboxes, adMailboxDN(m.cn))
	}
	// A contact: a person with a mail address, but outside the
	// organisation: no certificate, even as a member.
	fmt.Fprintf(&b, "dn: CN=Partner,%s\nobjectClass: contact\nmail: partner@partner.example\n\n", adPeople)
	users := func(from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, adUserDN(i))
		}
		return out
	}
	b.WriteString(testpeer.GroupLDIF(adGroupDN("Temps", adNested), "temps", users(26, 28)...))
	b.WriteString(testpeer.GroupLDIF(adGroupDN("Contractors", adNested), "contractors", append(users(21, 25), adGroupDN("Temps", adNested))...))
	b.WriteString(testpeer.GroupLDIF(adGroupDN("Mailboxes", adNested), "mailboxes", mailboxes...))
	b.WriteString(testpeer.GroupLDIF(adGroupDN("S/MIME Sales", adGroups), "smime-sales", append(users(1, 12), "CN=Partner,"+adPeople, adGroupDN("Mailboxes", adNested))...))
	b.WriteString(testpeer.GroupLDIF(adGroupDN("S/MIME Eng", adGroups), "smime-eng", append(users(13, 20), adGroupDN("Contractors", adNested))...))
	b.WriteString(testpeer.GroupLDIF(adGroupDN("Others", adGroups), "others", users(29, 30)...))
	return b.String()
}

// adDirectory is the users source as a customer configures it for AD:
// LDAPS on 636, the DC's certificate trusted through the CA file, a
// simple bind (AD refuses it without TLS) as a service account
// (password testpeer.SambaUserPW), the default user filter; changes
// adjust that configuration.
func adDirectory(t *testing.T, ad *testpeer.SambaAD, bindDN, groupBase string, readPublished bool, changes ...func(*pki.LDAPConfig)) *pki.LDAPDirectory {
	t.Helper()
	cfg := pki.LDAPConfig{URL: ad.LDAPSURL, BindDN: bindDN, BindPassword: testpeer.SambaUserPW,
		BaseDN: ad.BaseDN, GroupBaseDN: groupBase, Groups: []string{"S/MIME Sales", "S/MIME Eng"},
		UserFilter: "(&(objectClass=person)(mail=*))", Timeout: 10 * time.Second, TLS: ad.TLSConfig(t),
		ReadPublished: readPublished}
	for _, change := range changes {
		change(&cfg)
	}
	d, err := pki.NewLDAPDirectory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestActiveDirectory runs the LDAP users source, publishing and a full
// rollout against a real Samba AD DC (one DC for all subtests).
func TestActiveDirectory(t *testing.T) {
	testpeer.Require(t, "openssl")
	start := time.Now()
	ad := testpeer.StartSambaAD(t)
	ad.ExtendSchemaExchange(t)
	ad.Apply(t, adDirectoryLDIF())
	// Least privilege, as the admin guide asks: reads as any user,
	// writes only the two certificate attributes.
	svc := ad.AddCertPublisher(t, "svc-sealgate", true)
	t.Logf("Samba AD DC up and populated in %v", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	t.Run("server resolves nesting with IN_CHAIN", func(t *testing.T) {
		// What the users source relies on, asked directly: the DC
		// answers the 1941 rule with members two levels down.
		conn, err := ldap.DialURL(ad.LDAPSURL, ldap.DialWithTLSConfig(ad.TLSConfig(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Bind(ad.AdminDN, ad.AdminPW); err != nil {
			t.Fatal(err)
		}
		res, err := conn.Search(ldap.NewSearchRequest(adPeople, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"(memberOf:1.2.840.113556.1.4.1941:="+adGroupDN("S/MIME Eng", adGroups)+")", []string{"cn"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range res.Entries {
			got = append(got, e.GetAttributeValue("cn"))
		}
		if !slices.Contains(got, "User 27") || !slices.Contains(got, "User 13") || len(got) != 16 {
			t.Fatalf("in-chain members of S/MIME Eng: %v, want users 13-28", got)
		}
	})

	t.Run("users", func(t *testing.T) {
		// The group base holds only the configured groups: the nested
		// ones lie outside it. Reading and walking the groups under the
		// base (the path for other servers) cannot reach users 21-28;
		// only the server's IN_CHAIN evaluation does. Their presence
		// proves the AD path was taken.
		users, err := adDirectory(t, ad, svc, adGroups, false).Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]pki.User{}
		for _, u := range users {
			got[u.Email] = u
		}
		for _, tc := range []struct {
			name  string
			i     int
			want  bool
			alias string
		}{
			{"direct member", 1, true, ""},
			{"disabled member", 3, false, ""},
			{"aliases from proxyAddresses", 10, true, adAlias(10)},
			{"direct member of the other group", 13, true, ""},
			{"member through one nested group", 21, true, ""},
			{"member through two nested groups, with alias", 27, true, adAlias(27)},
			{"member of an unconfigured group only", 29, false, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				u, ok := got[adMail(tc.i)]
				if ok != tc.want {
					t.Fatalf("%s listed = %v, want %v", adMail(tc.i), ok, tc.want)
				}
				if !ok {
					return
				}
				if !strings.EqualFold(u.DN, adUserDN(tc.i)) {
					t.Errorf("DN %q, want %q", u.DN, adUserDN(tc.i))
				}
				var wantAliases []string
				if tc.alias != "" {
					wantAliases = []string{tc.alias}
				}
				if !slices.Equal(u.Aliases, wantAliases) {
					t.Errorf("aliases %v, want %v", u.Aliases, wantAliases)
				}
			})
		}
		if _, ok := got["partner@partner.example"]; ok {
			t.Error("the contact in S/MIME Sales is listed")
		}
		for _, m := range adMailboxes {
			if u, ok := got[m.mail]; !ok || u.Kind != m.kind {
				t.Errorf("mailbox %s (disabled, %s): listed %v as %q", m.mail, m.kind, ok, u.Kind)
			}
		}
		if u := got[adMail(1)]; u.Kind != pki.KindUser {
			t.Errorf("u01 is a %q, want a user", u.Kind)
		}
		if want := len(adEligibleMails()); len(users) != want {
			t.Errorf("%d users, want %d", len(users), want)
		}
	})

	t.Run("groups named by sAMAccountName", func(t *testing.T) {
		byCN, err := adDirectory(t, ad, svc, adGroups, false).Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		d, err := pki.NewLDAPDirectory(pki.LDAPConfig{URL: ad.LDAPSURL, BindDN: svc, BindPassword: testpeer.SambaUserPW,
			BaseDN: ad.BaseDN, GroupBaseDN: adGroups, Groups: []string{"smime-sales", "SMIME-ENG"}, Timeout: 10 * time.Second, TLS: ad.TLSConfig(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		bySAM, err := d.Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(bySAM) == 0 || !slices.EqualFunc(byCN, bySAM, func(a, b pki.User) bool { return a.Email == b.Email }) {
			t.Fatalf("by sAMAccountName: %d users, by CN: %d", len(bySAM), len(byCN))
		}
	})

	t.Run("publish and unpublish", func(t *testing.T) {
		d := adDirectory(t, ad, svc, adGroups, true)
		u := pki.User{Email: adMail(30), DN: adUserDN(30)}
		old, cur := selfSigned(t, u.Email), selfSigned(t, u.Email)
		if err := d.Publish(ctx, u, []*x509.Certificate{old, cur}); err != nil {
			t.Fatal(err)
		}
		certs, p7 := adPublished(t, ad, adUserDN(30))
		if len(certs) != 2 || p7 == nil {
			t.Fatalf("after publishing two: %d userCertificate values, userSMIMECertificate %v", len(certs), p7 != nil)
		}
		if out := testpeer.MustRun(t, nil, "openssl", "pkcs7", "-inform", "DER", "-in", writeFile(t, "u30.p7c", p7), "-print_certs", "-noout"); strings.Count(string(out), "subject=") != 2 {
			t.Fatalf("openssl pkcs7 -print_certs on userSMIMECertificate:\n%s", out)
		}
		if err := d.Unpublish(ctx, u.Email, []*x509.Certificate{old}); err != nil {
			t.Fatal(err)
		}
		certs, p7 = adPublished(t, ad, adUserDN(30))
		if len(certs) != 1 || !slices.Equal(certs[0], cur.Raw) || p7 == nil {
			t.Fatalf("after revoking the old one: %d certificates left (want the current one)", len(certs))
		}
		// By alias, as a revocation of a user who left finds them.
		if err := d.Publish(ctx, pki.User{Email: adMail(10), DN: adUserDN(10)}, []*x509.Certificate{old}); err != nil {
			t.Fatal(err)
		}
		if err := d.Unpublish(ctx, adAlias(10), []*x509.Certificate{old}); err != nil {
			t.Fatal(err)
		}
		if certs, p7 := adPublished(t, ad, adUserDN(10)); len(certs) != 0 || p7 != nil {
			t.Fatalf("u10 still holds %d certificates after unpublish by alias", len(certs))
		}
		if err := d.Unpublish(ctx, u.Email, []*x509.Certificate{cur}); err != nil {
			t.Fatal(err)
		}
		if certs, p7 := adPublished(t, ad, adUserDN(30)); len(certs) != 0 || p7 != nil {
			t.Fatalf("u30 still holds %d certificates", len(certs))
		}
	})

	t.Run("errors say what to do", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			cfg  func(*pki.LDAPConfig)
			want string
		}{
			{"simple bind without TLS", func(c *pki.LDAPConfig) { c.URL, c.TLS, c.AllowPlaintextBind = ad.URL, nil, true }, "use ldaps://HOST:636"},
			{"DC certificate not trusted", func(c *pki.LDAPConfig) { c.TLS = nil }, "certificate"},
			{"DC certificate not trusted over StartTLS", func(c *pki.LDAPConfig) { c.URL, c.StartTLS, c.TLS = ad.URL, true, nil }, "users.ldap.ca_file"},
			{"wrong password", func(c *pki.LDAPConfig) { c.BindPassword = "wrong" }, "Invalid Credentials"},
			{"group missing", func(c *pki.LDAPConfig) { c.Groups = []string{"S/MIME Sales", "No Such Group"} }, `group "No Such Group" (users.groups) not found`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := pki.LDAPConfig{URL: ad.LDAPSURL, BindDN: ad.AdminDN, BindPassword: ad.AdminPW, BaseDN: ad.BaseDN,
					GroupBaseDN: adGroups, Groups: []string{"S/MIME Sales"}, Timeout: 10 * time.Second, TLS: ad.TLSConfig(t)}
				tc.cfg(&cfg)
				d, err := pki.NewLDAPDirectory(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				_, err = d.Users(ctx)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want it to say %q", err, tc.want)
				}
				if strings.Contains(err.Error(), ad.AdminPW) || (cfg.BindPassword == "wrong" && strings.Contains(err.Error(), "wrong")) {
					t.Fatalf("error reveals the password: %v", err)
				}
			})
		}
	})

	t.Run("StartTLS on 389", func(t *testing.T) {
		// The DC refuses a simple bind on 389 in clear text (see "errors
		// say what to do"); after StartTLS, verified against the DC's
		// CA, the same port serves the same users as LDAPS.
		overLDAPS, err := adDirectory(t, ad, svc, adGroups, false).Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		overStartTLS, err := adDirectory(t, ad, svc, adGroups, false, func(c *pki.LDAPConfig) { c.URL, c.StartTLS = ad.URL, true }).Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(overStartTLS) == 0 || !slices.EqualFunc(overLDAPS, overStartTLS, func(a, b pki.User) bool { return a.Email == b.Email }) {
			t.Fatalf("over StartTLS: %d users, over LDAPS: %d", len(overStartTLS), len(overLDAPS))
		}
	})

	t.Run("publishing without the rights says which", func(t *testing.T) {
		plain := "CN=svc-plain,CN=Users," + ad.BaseDN
		ad.Apply(t, testpeer.UserLDIF(testpeer.ADUser{DN: plain, SAMAccountName: "svc-plain"}))
		d := adDirectory(t, ad, plain, adGroups, true)
		if users, err := d.Users(ctx); err != nil || len(users) == 0 {
			t.Fatalf("reading as a plain account: %d users, %v", len(users), err)
		}
		err := d.Publish(ctx, pki.User{Email: adMail(30), DN: adUserDN(30)}, []*x509.Certificate{selfSigned(t, adMail(30))})
		if err == nil || !strings.Contains(err.Error(), "Cert Publishers") || !strings.Contains(err.Error(), "Write userSMIMECertificate") {
			t.Fatalf("publish as an account without rights: %v", err)
		}
	})

	t.Run("group memberships", func(t *testing.T) {
		// Read from memberOf on AD (member is capped at 1,500 values).
		got, err := adDirectory(t, ad, svc, ad.BaseDN, false).GroupMemberships(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sam := map[string]string{"S/MIME Sales": "smime-sales", "S/MIME Eng": "smime-eng", "Contractors": "contractors", "Temps": "temps", "Others": "others"}
		names := func(groups ...string) []string {
			var out []string
			for _, g := range groups {
				cn, _, _ := strings.Cut(strings.TrimPrefix(g, "CN="), ",")
				out = append(out, cn, g, sam[cn])
			}
			slices.Sort(out)
			return out
		}
		sales, eng := adGroupDN("S/MIME Sales", adGroups), adGroupDN("S/MIME Eng", adGroups)
		contractors, temps := adGroupDN("Contractors", adNested), adGroupDN("Temps", adNested)
		for _, tc := range []struct {
			email string
			want  []string
		}{
			{adMail(1), names(sales)},
			{adMail(3), names(sales)}, // disabled: still a member for policy
			{adAlias(10), names(sales)},
			{adMail(13), names(eng)},
			{adMail(21), names(contractors, eng)},
			{adAlias(27), names(temps, contractors, eng)},
			{adMail(29), names(adGroupDN("Others", adGroups))},
			{"nobody@example.test", nil},
		} {
			if g := got[tc.email]; !slices.Equal(g, tc.want) {
				t.Errorf("%s: groups %v, want %v", tc.email, g, tc.want)
			}
		}
	})

	t.Run("rollout", func(t *testing.T) { adRollout(t, ad, svc) })
}

// adRollout: the embedded CA issues exactly the eligible set from AD,
// openssl accepts every certificate for S/MIME, the certificates land in
// AD, a second run changes nothing, and disabling an account, removing
// it from a nested group or letting it expire (accountExpires) revokes and
// unpublishes.
func adRollout(t *testing.T, ad *testpeer.SambaAD, svc string) {
	ctx := context.Background()
	kit := embeddedKit(t)
	d := adDirectory(t, ad, svc, adGroups, true)
	st := newStore(t)
	m := &pki.Manager{Store: st, Issuer: kit.issuer, Users: d, Publisher: d, KeyType: pki.P256,
		Validity: 365 * 24 * time.Hour, RenewBefore: 30 * 24 * time.Hour}
	plan, err := m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, s := range plan.Steps {
		if s.Action != pki.ActionIssue {
			t.Errorf("step %s %s, want issue", s.Action, s.Email)
		}
		planned = append(planned, s.Email)
	}
	want := adEligibleMails()
	slices.Sort(planned)
	if !slices.Equal(planned, want) {
		t.Fatalf("plan issues to %v\nwant %v", planned, want)
	}
	if res := mustSync(t, m); res.Issued != len(want) || res.Failed != 0 {
		t.Fatalf("rollout: %+v", res)
	}

	dir := t.TempDir()
	var files []string
	for _, email := range want {
		c, err := m.Current(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, writePEM(t, filepath.Join(dir, email+".pem"), c.DER))
	}
	// P-256 keeps the test fast. openssl's smimeencrypt purpose wants
	// keyEncipherment, an RSA usage (EC certificates carry keyAgreement),
	// so only smimesign is asked here; TestRolloutLDAP checks both on RSA.
	out := string(testpeer.MustRun(t, nil, "openssl", append([]string{"verify", "-CAfile", kit.rootPEM, "-untrusted", kit.chain, "-purpose", "smimesign"}, files...)...))
	if n := strings.Count(out, ": OK"); n != len(files) {
		t.Fatalf("openssl verify -purpose smimesign: %d of %d OK\n%s", n, len(files), out)
	}
	c27, _ := m.Current(ctx, adMail(27))
	x27, err := x509.ParseCertificate(c27.DER)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x27.EmailAddresses, []string{adMail(27), adAlias(27)}) {
		t.Errorf("u27 SANs %v, want mail and proxyAddresses alias", x27.EmailAddresses)
	}
	if certs, _ := adPublished(t, ad, adUserDN(27)); len(certs) != 1 || !slices.Equal(certs[0], c27.DER) {
		t.Fatalf("u27 (nested two deep) holds %d published certificates, want its current one", len(certs))
	}
	// Shared mailboxes are published like users, so Outlook finds
	// their certificates in the GAL.
	if cs, _ := m.Current(ctx, "claims@example.test"); cs.DER == nil {
		t.Fatal("the shared mailbox has no certificate")
	} else if certs, _ := adPublished(t, ad, adMailboxDN("Shared Claims")); len(certs) != 1 || !slices.Equal(certs[0], cs.DER) {
		t.Fatalf("the shared mailbox holds %d published certificates, want its current one", len(certs))
	}
	if certs, _ := adPublished(t, ad, adUserDN(29)); len(certs) != 0 {
		t.Fatal("u29 (not in a configured group) has a certificate in AD")
	}

	// Idempotent: the published certificates are read back from AD's
	// userCertificate and match.
	if res := mustSync(t, m); res.Unchanged != len(want) || res.Published != 0 || res.Issued != 0 {
		t.Fatalf("second rollout not a no-op: %+v", res)
	}

	c05, _ := m.Current(ctx, adMail(5))
	ad.Apply(t, "dn: "+adUserDN(5)+"\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\n"+
		"dn: "+adGroupDN("Temps", adNested)+"\nchangetype: modify\ndelete: member\nmember: "+adUserDN(27)+"\n")
	if res := mustSync(t, m); res.Revoked != 2 || res.Failed != 0 {
		t.Fatalf("after disabling u05 and removing u27 from Temps: %+v", res)
	}
	for _, i := range []int{5, 27} {
		if certs, p7 := adPublished(t, ad, adUserDN(i)); len(certs) != 0 || p7 != nil {
			t.Errorf("u%02d still published after revocation", i)
		}
	}
	// accountExpires: u07 expired on 2020-01-01 (written as ADUC
	// writes it: 100 ns intervals since 1601), u08 expires in a year
	// (set by samba-tool, as an admin would). Only u07 loses its
	// certificate; the account stays enabled in userAccountControl.
	c07, _ := m.Current(ctx, adMail(7))
	ad.Apply(t, "dn: "+adUserDN(7)+"\nchangetype: modify\nreplace: accountExpires\naccountExpires: 132223104000000000\n")
	ad.Tool(t, "user", "setexpiry", "u08", "--days=365")
	if out := ad.Search(t, adUserDN(8), "(objectClass=*)", "accountExpires"); !strings.Contains(out, "accountExpires: ") || strings.Contains(out, "accountExpires: 0\n") {
		t.Fatalf("samba-tool setexpiry left u08 without an expiry:\n%s", out)
	}
	if res := mustSync(t, m); res.Revoked != 1 || res.Failed != 0 || res.Issued != 0 {
		t.Fatalf("after u07's account expired: %+v, want one revocation", res)
	}
	if c, err := m.Current(ctx, adMail(8)); err != nil || c.DER == nil {
		t.Errorf("u08 (expires in a year) lost its certificate: %v", err)
	}
	if certs, p7 := adPublished(t, ad, adUserDN(7)); len(certs) != 0 || p7 != nil {
		t.Error("u07 (expired) still published after revocation")
	}
	crl := strings.ToUpper(string(testpeer.MustRun(t, nil, "openssl", "crl", "-inform", "DER", "-in", writeFile(t, "crl.der", kit.crl(t)), "-noout", "-text")))
	for _, c := range []store.Certificate{c05, c27, c07} {
		if !strings.Contains(crl, strings.ToUpper(c.Serial)) {
			t.Errorf("serial %s (%s) not on the CRL", c.Serial, c.Email)
		}
	}
}

// adPublished reads what AD holds for dn: the userCertificate values and
// the userSMIMECertificate blob (nil when absent).
func adPublished(t *testing.T, ad *testpeer.SambaAD, dn string) (certs [][]byte, p7 []byte) {
	t.Helper()
	for _, line := range strings.Split(ad.Search(t, dn, "(objectClass=*)", "userCertificate", "userSMIMECertificate"), "\n") {
		name, val, ok := strings.Cut(line, ":: ")
		if !ok {
			continue
		}
		der, err := base64.StdEncoding.DecodeString(val)
		if err != nil {
			t.Fatalf("%s of %s: %v", name, dn, err)
		}
		switch name {
		case "userCertificate":
			certs = append(certs, der)
		case "userSMIMECertificate":
			p7 = der
		}
	}
	return certs, p7
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
