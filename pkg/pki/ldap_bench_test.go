package pki_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
)

// BenchmarkLDAPPublish publishes one certificate per user from 4
// goroutines (a rollout's workers) to slapd over ldap:// and ldaps://,
// and to a Samba AD DC over ldaps:// as a Cert Publishers account:
// publishes/s is the figure, binds/op counts the connections made. The
// "fresh" variants dial and bind for every publish, as the publisher did
// before connections were kept; "kept" is what it does now. Run with e.g.
// -benchtime=1000x (the AD cases add 1.5 s of setup and hold the Samba
// lock).
func BenchmarkLDAPPublish(b *testing.B) {
	type target struct {
		url    func(proxyAddr string) string
		addr   string
		cfg    pki.LDAPConfig
		userDN func(i int) string
		users  int
	}
	slapdTargets := func(b *testing.B) map[string]target {
		const users = 200
		certFile, keyFile := testpeer.WriteServerCert(b, b.TempDir(), "ldap.example.test")
		slapd := testpeer.StartSlapd(b, testpeer.SlapdOptions{Suffix: suffix, LDIF: publishLDIF(users), TLSCertFile: certFile, TLSKeyFile: keyFile})
		cfg := pki.LDAPConfig{BindDN: slapd.RootDN, BindPassword: slapd.RootPW, AllowPlaintextBind: true, BaseDN: suffix, Groups: []string{"unused"}, Timeout: 5 * time.Second}
		tlsCfg := cfg
		tlsCfg.TLS = testpeer.TrustFile(b, certFile)
		return map[string]target{
			"slapd-ldap":  {url: func(a string) string { return "ldap://" + a }, addr: slapd.Addr, cfg: cfg, userDN: userDN, users: users},
			"slapd-ldaps": {url: func(a string) string { return "ldaps://" + a }, addr: strings.TrimPrefix(slapd.LDAPSURL, "ldaps://"), cfg: tlsCfg, userDN: userDN, users: users},
		}
	}
	adTarget := func(b *testing.B) target {
		const users = 40
		ad := testpeer.StartSambaAD(b)
		var ldif strings.Builder
		fmt.Fprintf(&ldif, "dn: %s\nobjectClass: organizationalUnit\n\n", adPeople)
		for i := 1; i <= users; i++ {
			ldif.WriteString(testpeer.UserLDIF(testpeer.ADUser{DN: adUserDN(i), SAMAccountName: fmt.Sprintf("u%02d", i), Mail: adMail(i)}))
		}
		ad.Apply(b, ldif.String())
		svc := ad.AddCertPublisher(b, "svc-bench", true)
		return target{url: func(a string) string { return "ldaps://" + a }, addr: "127.0.0.1:636", userDN: adUserDN, users: users,
			cfg: pki.LDAPConfig{BindDN: svc, BindPassword: testpeer.SambaUserPW, BaseDN: ad.BaseDN, Groups: []string{"unused"},
				Timeout: 10 * time.Second, TLS: ad.TLSConfig(b)}}
	}
	run := func(b *testing.B, name string, tg target) {
		for _, fresh := range []bool{true, false} {
			mode := "kept"
			if fresh {
				mode = "fresh"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				proxy := testpeer.StartRecordingProxy(b, tg.addr)
				cfg := tg.cfg
				cfg.URL = tg.url(proxy.Addr())
				benchPublish(b, cfg, tg.userDN, tg.users, fresh)
				b.ReportMetric(float64(proxy.Accepted())/float64(b.N), "binds/op")
			})
		}
	}
	b.Run("slapd", func(b *testing.B) {
		targets := slapdTargets(b)
		for _, name := range []string{"slapd-ldap", "slapd-ldaps"} {
			run(b, strings.TrimPrefix(name, "slapd-"), targets[name])
		}
	})
	b.Run("samba-ad", func(b *testing.B) { run(b, "ldaps", adTarget(b)) })
}

// benchPublish publishes b.N times round-robin over users; fresh makes a
// new directory (so a new connection and bind) for every publish.
func benchPublish(b *testing.B, cfg pki.LDAPConfig, dn func(int) string, users int, fresh bool) {
	cert := selfSigned(b, "bench@example.test")
	ctx := context.Background()
	newDir := func() *pki.LDAPDirectory {
		d, err := pki.NewLDAPDirectory(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	shared := newDir()
	defer shared.Close()
	b.SetParallelism(4)
	var next atomicCounter
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.add()%users + 1
			d := shared
			if fresh {
				d = newDir()
			}
			err := d.Publish(ctx, pki.User{Email: fmt.Sprint(i), DN: dn(i)}, []*x509.Certificate{cert})
			if fresh {
				d.Close()
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add() int { return int(c.n.Add(1)) }

// BenchmarkForestUsers reads the users of a forest: membership of one
// group (nested one level) from Samba's global catalog on 3269, then 100
// members from the root domain (Samba, ldaps://) and 100 from a second
// domain (slapd, ldaps://), one base-object read per member. "one domain"
// is the same 100 Samba users read without the GC (one filtered search),
// for comparison. Run with e.g. -benchtime=20x.
func BenchmarkForestUsers(b *testing.B) {
	const n = 100
	ad := testpeer.StartSambaAD(b)
	branch := "OU=Branch," + ad.BaseDN
	var ldif strings.Builder
	fmt.Fprintf(&ldif, "dn: %s\nobjectClass: organizationalUnit\n\ndn: %s\nobjectClass: organizationalUnit\n\n", adPeople, branch)
	var members []string
	for i := 1; i <= n; i++ {
		ldif.WriteString(testpeer.UserLDIF(testpeer.ADUser{DN: adUserDN(i), SAMAccountName: fmt.Sprintf("u%02d", i), Mail: adMail(i)}))
		members = append(members, adUserDN(i))
	}
	var slapdLDIF strings.Builder
	var branchMembers []string
	for i := 1; i <= n; i++ {
		dn := fmt.Sprintf("CN=B%03d,%s", i, branch)
		ldif.WriteString(testpeer.UserLDIF(testpeer.ADUser{DN: dn, SAMAccountName: fmt.Sprintf("b%03d", i)}))
		fmt.Fprintf(&slapdLDIF, "dn: %s\nobjectClass: inetOrgPerson\nobjectClass: adUser\ncn: B%03d\nsn: B\nmail: b%03d@branch.example.test\nuserAccountControl: 512\n\n", dn, i, i)
		branchMembers = append(branchMembers, dn)
	}
	ldif.WriteString(testpeer.GroupLDIF("CN=Branch,"+adPeople, "branch-all", branchMembers...))
	ldif.WriteString(testpeer.GroupLDIF("CN=Bench,"+adPeople, "bench", append(members, "CN=Branch,"+adPeople)...))
	ad.Apply(b, ldif.String())
	svc := "CN=admin," + branch
	ad.Apply(b, testpeer.UserLDIF(testpeer.ADUser{DN: svc, SAMAccountName: "svc-bench"}))
	certFile, keyFile := testpeer.WriteServerCert(b, b.TempDir(), "dc.branch.example.test")
	slapd := testpeer.StartSlapd(b, testpeer.SlapdOptions{Suffix: branch, RootPW: testpeer.SambaUserPW, TLSCertFile: certFile, TLSKeyFile: keyFile, LDIF: slapdLDIF.String()})
	trust := ad.TLSConfig(b)
	for _, f := range []string{certFile} {
		b2, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		trust.RootCAs.AppendCertsFromPEM(b2)
	}
	for _, tc := range []struct {
		name string
		cfg  pki.LDAPConfig
		want int
	}{
		{"one domain", pki.LDAPConfig{URL: ad.LDAPSURL, BindDN: svc, BindPassword: testpeer.SambaUserPW, BaseDN: ad.BaseDN,
			Groups: []string{"bench"}, Timeout: 10 * time.Second, TLS: trust}, n},
		{"forest", pki.LDAPConfig{URL: ad.LDAPSURL, BindDN: svc, BindPassword: testpeer.SambaUserPW, BaseDN: ad.BaseDN,
			Groups: []string{"bench"}, Timeout: 10 * time.Second, TLS: trust, GlobalCatalog: "ldaps://127.0.0.1:3269",
			Domains: []pki.LDAPDomain{{BaseDN: branch, URL: slapd.LDAPSURL}}}, 2 * n},
	} {
		b.Run(tc.name, func(b *testing.B) {
			d, err := pki.NewLDAPDirectory(tc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			for b.Loop() {
				users, err := d.Users(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if len(users) != tc.want {
					b.Fatalf("%d users, want %d", len(users), tc.want)
				}
			}
			b.ReportMetric(float64(tc.want), "users/op")
		})
	}
}
