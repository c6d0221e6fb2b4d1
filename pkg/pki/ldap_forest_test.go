package pki_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
)

// The forest test: the Samba DC is the forest root domain and its global
// catalog (ldap://127.0.0.1:3268 with StartTLS); the users under
// OU=Branch are, for sealgate, in a second domain served by a slapd whose
// naming context is OU=Branch,DC=example,DC=test. Samba cannot host a
// second domain of the same forest (it has no child-domain support), so
// the second domain is a second real directory holding the same DNs with
// different attributes: whatever a member looks like in the GC, sealgate
// must take the mail address, the account state and the certificates
// from the second directory.
const (
	forestPeople = "OU=People," + testpeer.SambaBaseDN
	forestBranch = "OU=Branch," + testpeer.SambaBaseDN
	forestGroups = "OU=Groups," + testpeer.SambaBaseDN
	// forestSvc is the service account, known to both directories
	// under one DN and password (in a real forest one account reads
	// every domain).
	forestSvc = "CN=admin," + forestBranch
	// foreignSID is a member from another forest (through a trust):
	// Samba creates its foreign security principal when a group gets
	// the member <SID=...>, as Windows does.
	foreignSID = "S-1-5-21-1111111111-2222222222-3333333333-1104"
)

// syncBuffer is a log sink safe for the directory's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestActiveDirectoryForest(t *testing.T) {
	testpeer.Require(t, "openssl")
	ad := testpeer.StartSambaAD(t)
	// Samba's side: the root domain's users, the Branch users as the GC
	// sees them, and the groups: S/MIME Forest ⊃ Branch Staff ⊃ Bob, Carl,
	// the foreign principal; Alice directly; a contact.
	var ldif strings.Builder
	for _, ou := range []string{forestPeople, forestBranch, forestGroups} {
		fmt.Fprintf(&ldif, "dn: %s\nobjectClass: organizationalUnit\n\n", ou)
	}
	ldif.WriteString(testpeer.UserLDIF(testpeer.ADUser{DN: forestSvc, SAMAccountName: "svc-forest"}))
	ldif.WriteString(testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Alice," + forestPeople, SAMAccountName: "alice", Mail: "alice@example.test"}))
	// As the GC has them: enabled, with the root domain's addresses.
	ldif.WriteString(testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Bob," + forestBranch, SAMAccountName: "bob", Mail: "bob@gc-copy.example.test"}))
	ldif.WriteString(testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Carl," + forestBranch, SAMAccountName: "carl", Mail: "carl@branch.example.test"}))
	fmt.Fprintf(&ldif, "dn: CN=Partner,%s\nobjectClass: contact\nmail: partner@partner.example\n\n", forestPeople)
	ldif.WriteString(testpeer.GroupLDIF("CN=Branch Staff,"+forestGroups, "branch-staff", "CN=Bob,"+forestBranch, "CN=Carl,"+forestBranch,
		"<SID="+foreignSID+">"))
	ldif.WriteString(testpeer.GroupLDIF("CN=S/MIME Forest,"+forestGroups, "smime-forest", "CN=Alice,"+forestPeople,
		"CN=Branch Staff,"+forestGroups, "CN=Partner,"+forestPeople))
	// The service account may write certificates in the root domain
	// (a test shortcut for Cert Publishers plus the delegation).
	ldif.WriteString("dn: CN=Domain Admins,CN=Users," + ad.BaseDN + "\nchangetype: modify\nadd: member\nmember: " + forestSvc + "\n\n")
	ad.Apply(t, ldif.String())

	// The second domain: Bob with his own addresses, Carl disabled
	// there (the GC copy says enabled).
	slapdCert, slapdKey := testpeer.WriteServerCert(t, t.TempDir(), "dc.branch.example.test")
	branch := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: forestBranch, RootPW: testpeer.SambaUserPW,
		TLSCertFile: slapdCert, TLSKeyFile: slapdKey, LDIF: "" +
			"dn: CN=Bob," + forestBranch + "\nobjectClass: inetOrgPerson\nobjectClass: adUser\ncn: Bob\nsn: Bob\n" +
			"mail: bob@branch.example.test\nproxyAddresses: SMTP:bob@branch.example.test\nproxyAddresses: smtp:robert@branch.example.test\n" +
			"userAccountControl: 512\n\n" +
			"dn: CN=Carl," + forestBranch + "\nobjectClass: inetOrgPerson\nobjectClass: adUser\ncn: Carl\nsn: Carl\n" +
			"mail: carl@branch.example.test\nuserAccountControl: 514\n\n"})
	if branch.RootDN != strings.ToLower("cn=admin,")+forestBranch {
		t.Fatalf("slapd's root DN %s is not the service account %s", branch.RootDN, forestSvc)
	}
	// ca_file with both CAs, as an enterprise CA file would hold the
	// one CA that signed every DC's certificate.
	trust := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	for _, f := range []string{ad.CAFile, slapdCert} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		trust.RootCAs.AppendCertsFromPEM(b)
	}
	gcProxy := testpeer.StartRecordingProxy(t, "127.0.0.1:3268")
	logs := &syncBuffer{}
	forestCfg := func(changes ...func(*pki.LDAPConfig)) pki.LDAPConfig {
		// The root domain and the GC over StartTLS (389, 3268), the
		// second domain over LDAPS: starttls upgrades the ldap:// ones.
		c := pki.LDAPConfig{URL: ad.URL, BindDN: forestSvc, BindPassword: testpeer.SambaUserPW, BaseDN: ad.BaseDN,
			GroupBaseDN: forestGroups, Groups: []string{"S/MIME Forest"}, Timeout: 10 * time.Second, TLS: trust,
			StartTLS: true, GlobalCatalog: gcProxy.URL(), ReadPublished: true,
			Domains: []pki.LDAPDomain{{BaseDN: forestBranch, URL: branch.LDAPSURL}},
			Log:     slog.New(slog.NewTextHandler(logs, nil))}
		for _, change := range changes {
			change(&c)
		}
		return c
	}
	open := func(t *testing.T, cfg pki.LDAPConfig) *pki.LDAPDirectory {
		d, err := pki.NewLDAPDirectory(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	ctx := context.Background()

	t.Run("membership from the GC, attributes from each member's domain", func(t *testing.T) {
		before := gcProxy.Accepted()
		users, err := open(t, forestCfg()).Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if gcProxy.Accepted() == before {
			t.Fatal("the global catalog port was not asked")
		}
		// StartTLS on 3268 before the bind, as on 389.
		if bytes.Contains(gcProxy.Sent(), []byte(testpeer.SambaUserPW)) {
			t.Fatal("the bind password crossed to the global catalog in clear text")
		}
		got := map[string]pki.User{}
		for _, u := range users {
			got[u.Email] = u
		}
		for _, tc := range []struct {
			name, email, dn string
			want            bool
			aliases         []string
		}{
			{"root domain user, direct member", "alice@example.test", "CN=Alice," + forestPeople, true, nil},
			{"second-domain user through a nested group: its own domain's addresses", "bob@branch.example.test", "CN=Bob," + forestBranch, true,
				[]string{"robert@branch.example.test"}},
			{"the GC's copy of the address is not used", "bob@gc-copy.example.test", "", false, nil},
			{"disabled in its own domain, enabled in the GC copy", "carl@branch.example.test", "", false, nil},
			{"a contact in the group", "partner@partner.example", "", false, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				u, ok := got[tc.email]
				if ok != tc.want {
					t.Fatalf("%s listed = %v, want %v (users %v)", tc.email, ok, tc.want, slices.Collect(mapsKeys(got)))
				}
				if ok && (!strings.EqualFold(u.DN, tc.dn) || !slices.Equal(u.Aliases, tc.aliases)) {
					t.Fatalf("%s: DN %q aliases %v, want %q %v", tc.email, u.DN, u.Aliases, tc.dn, tc.aliases)
				}
			})
		}
		if len(users) != 2 {
			t.Errorf("%d users, want 2", len(users))
		}
		if !strings.Contains(logs.String(), "sid="+foreignSID) || !strings.Contains(logs.String(), "foreign security principal") {
			t.Errorf("no warning naming the foreign principal's SID %s in the log:\n%s", foreignSID, logs.String())
		}
	})

	t.Run("GC over ldaps on 3269", func(t *testing.T) {
		users, err := open(t, forestCfg(func(c *pki.LDAPConfig) { c.GlobalCatalog = "ldaps://127.0.0.1:3269" })).Users(ctx)
		if err != nil || len(users) != 2 {
			t.Fatalf("%d users, %v", len(users), err)
		}
	})

	t.Run("sender groups through the GC", func(t *testing.T) {
		// This domain's base is OU=People: Bob (OU=Branch) is found
		// only because the GC is searched forest-wide. His address is
		// the GC's copy (in a real forest the same as his domain's).
		home := func(c *pki.LDAPConfig) { c.BaseDN = forestPeople }
		forestGroups, err := open(t, forestCfg(home)).GroupMemberships(ctx)
		if err != nil {
			t.Fatal(err)
		}
		local, err := open(t, forestCfg(home, func(c *pki.LDAPConfig) { c.GlobalCatalog, c.Domains = "", nil })).GroupMemberships(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			email       string
			viaGC, here bool
		}{
			{"alice@example.test", true, true},
			{"bob@gc-copy.example.test", true, false},
		} {
			for _, c := range []struct {
				name string
				m    map[string][]string
				want bool
			}{{"through the GC", forestGroups, tc.viaGC}, {"this domain only", local, tc.here}} {
				g := c.m[tc.email]
				if got := slices.Contains(g, "S/MIME Forest"); got != c.want {
					t.Errorf("%s %s: in S/MIME Forest = %v, want %v (groups %v)", tc.email, c.name, got, c.want, g)
				}
			}
		}
		if g := forestGroups["bob@gc-copy.example.test"]; !slices.Contains(g, "branch-staff") {
			t.Errorf("Bob's groups through the GC lack the nested Branch Staff: %v", g)
		}
	})

	t.Run("rollout; outages and unknown domains revoke nobody", func(t *testing.T) {
		kit := embeddedKit(t)
		st := newStore(t)
		newManager := func(d *pki.LDAPDirectory) *pki.Manager {
			return &pki.Manager{Store: st, Issuer: kit.issuer, Users: d, Publisher: d, KeyType: pki.P256,
				Validity: 365 * 24 * time.Hour, RenewBefore: 30 * 24 * time.Hour}
		}
		d := open(t, forestCfg())
		if res := mustSync(t, newManager(d)); res.Issued != 2 || res.Failed != 0 {
			t.Fatalf("first rollout: %+v", res)
		}
		// Bob's certificate went to his own domain's directory (the GC
		// is read-only), Alice's to the root domain.
		if out := branch.Search(t, "CN=Bob,"+forestBranch, "(objectClass=*)", "userCertificate;binary"); !strings.Contains(out, "userCertificate;binary::") {
			t.Fatalf("Bob's certificate not published in his domain:\n%s", out)
		}
		if certs, _ := adPublished(t, ad, "CN=Alice,"+forestPeople); len(certs) != 1 {
			t.Fatalf("Alice holds %d published certificates in the root domain", len(certs))
		}
		active := func() []string {
			all, err := st.Certificates(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, c := range all {
				if c.RevokedAt.IsZero() {
					out = append(out, c.Email)
				}
			}
			slices.Sort(out)
			return out
		}
		want := []string{"alice@example.test", "bob@branch.example.test"}
		if got := active(); !slices.Equal(got, want) {
			t.Fatalf("active certificates %v, want %v", got, want)
		}
		down := fmt.Sprintf("ldaps://127.0.0.1:%d", testpeer.FreePort(t)) // nothing listens
		for _, tc := range []struct {
			name   string
			change func(*pki.LDAPConfig)
			want   string
		}{
			{"GC down", func(c *pki.LDAPConfig) { c.GlobalCatalog = down }, "connecting to " + down},
			{"second domain's DC down", func(c *pki.LDAPConfig) { c.Domains[0].URL = down }, "connecting to " + down},
			{"second domain not configured", func(c *pki.LDAPConfig) { c.Domains = nil; c.BaseDN = forestPeople },
				`CN=Bob,OU=Branch,DC=example,DC=test lies in no configured domain: add [[users.ldap.domains]] with base_dn = "DC=example,DC=test"`},
			{"GC is not a global catalog", func(c *pki.LDAPConfig) { c.GlobalCatalog = branch.LDAPSURL }, "not an Active Directory global catalog"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res, err := newManager(open(t, forestCfg(tc.change))).Sync(ctx, pki.ApplyOptions{Parallel: 2})
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("rollout: %+v, error %v; want an error saying %q", res, err, tc.want)
				}
				if strings.Contains(err.Error(), testpeer.SambaUserPW) {
					t.Fatalf("error reveals the bind password: %v", err)
				}
				if got := active(); !slices.Equal(got, want) {
					t.Fatalf("after the failed rollout active certificates are %v, want %v: membership unknown was taken for not a member", got, want)
				}
			})
		}
		// Back to normal: Carl enabled in his own domain gets one;
		// Bob removed from the group in the GC loses his.
		branch.Apply(t, "dn: CN=Carl,"+forestBranch+"\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 512\n\n")
		ad.Apply(t, "dn: CN=Branch Staff,"+forestGroups+"\nchangetype: modify\ndelete: member\nmember: CN=Bob,"+forestBranch+"\n\n")
		if res := mustSync(t, newManager(d)); res.Issued != 1 || res.Revoked != 1 || res.Failed != 0 {
			t.Fatalf("after enabling Carl and removing Bob: %+v", res)
		}
		if got, want := active(), []string{"alice@example.test", "carl@branch.example.test"}; !slices.Equal(got, want) {
			t.Fatalf("active certificates %v, want %v", got, want)
		}
		if out := branch.Search(t, "CN=Bob,"+forestBranch, "(objectClass=*)", "userCertificate;binary"); strings.Contains(out, "userCertificate;binary::") {
			t.Fatalf("Bob's revoked certificate still published in his domain:\n%s", out)
		}
	})
}

func mapsKeys(m map[string]pki.User) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
