package pki_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/pki/stepca"
)

const suffix = "dc=example,dc=test"

func userDN(i int) string { return fmt.Sprintf("uid=u%03d,ou=people,%s", i, suffix) }
func groupDN(cn string) string {
	return fmt.Sprintf("cn=%s,ou=groups,%s", cn, suffix)
}
func userMail(i int) string { return fmt.Sprintf("u%03d@example.test", i) }

// directoryLDIF builds 200 users and four groups: sales, eng (which nests
// contractors, with a cycle back to eng), board, and others (not
// configured). Three members are disabled (userAccountControl 514).
func directoryLDIF() (ldif string, eligible map[string]bool, aliases map[string]string) {
	var b strings.Builder
	b.WriteString("dn: ou=people," + suffix + "\nobjectClass: organizationalUnit\nou: people\n\n")
	b.WriteString("dn: ou=groups," + suffix + "\nobjectClass: organizationalUnit\nou: groups\n\n")
	disabled := map[int]bool{5: true, 70: true, 115: true}
	eligible, aliases = map[string]bool{}, map[string]string{}
	for i := 1; i <= 200; i++ {
		uac := 512
		if disabled[i] {
			uac = 514
		}
		fmt.Fprintf(&b, "dn: %s\nobjectClass: inetOrgPerson\nobjectClass: adUser\nuid: u%03d\ncn: User %03d\nsn: %03d\nmail: %s\nproxyAddresses: SMTP:%s\nuserAccountControl: %d\n",
			userDN(i), i, i, i, userMail(i), strings.ToUpper(userMail(i)[:1])+userMail(i)[1:], uac)
		if i%10 == 0 {
			alias := fmt.Sprintf("user.%03d@alias.example.test", i)
			fmt.Fprintf(&b, "proxyAddresses: smtp:%s\nproxyAddresses: X500:/o=ex/cn=u%03d\n", alias, i)
			aliases[userMail(i)] = alias
		}
		b.WriteString("\n")
		if i <= 150 && !disabled[i] {
			eligible[userMail(i)] = true
		}
	}
	group := func(cn string, members ...string) {
		fmt.Fprintf(&b, "dn: %s\nobjectClass: groupOfNames\ncn: %s\n", groupDN(cn), cn)
		for _, m := range members {
			fmt.Fprintf(&b, "member: %s\n", m)
		}
		b.WriteString("\n")
	}
	rng := func(from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, userDN(i))
		}
		return out
	}
	group("sales", rng(1, 60)...)
	group("contractors", rng(111, 140)...)
	group("eng", append(rng(61, 110), groupDN("contractors"))...)
	b.WriteString("dn: " + groupDN("contractors") + "\nchangetype: modify\nadd: member\nmember: " + groupDN("eng") + "\n\n")
	group("board", rng(141, 150)...)
	group("others", rng(151, 190)...)
	return b.String(), eligible, aliases
}

// issuerKit is an issuer under test with what openssl needs to check it.
type issuerKit struct {
	issuer  pki.Issuer
	rootPEM string
	chain   string
	crl     func(t *testing.T) []byte // DER
}

func embeddedKit(t *testing.T) issuerKit {
	tc := newTestCA(t)
	return issuerKit{issuer: tc.ca, rootPEM: tc.rootPEM, chain: tc.chain, crl: func(t *testing.T) []byte {
		der, err := tc.ca.CRL()
		if err != nil {
			t.Fatal(err)
		}
		return der
	}}
}

func stepcaKit(t *testing.T) issuerKit {
	srv := testpeer.StartStepCA(t, stepca.SMIMETemplate, 2160*time.Hour)
	iss, err := stepca.New(context.Background(), stepca.Config{URL: srv.URL, RootFile: srv.RootFile, Provisioner: srv.Provisioner, Password: srv.Password, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return issuerKit{issuer: iss, rootPEM: writePEM(t, filepath.Join(dir, "root.pem"), srv.Root.Raw),
		chain: writePEM(t, filepath.Join(dir, "int.pem"), srv.Issuing.Raw), crl: func(t *testing.T) []byte {
			pool := x509.NewCertPool()
			pool.AddCert(srv.Root)
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
			resp, err := hc.Get(srv.URL + "/1.0/crl")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			der, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return der
		}}
}

// TestRolloutLDAP is the issue's acceptance suite, run against the
// embedded CA and against a real step-ca on loopback.
func TestRolloutLDAP(t *testing.T) {
	testpeer.Require(t, "openssl")
	for _, tc := range []struct {
		name string
		kit  func(*testing.T) issuerKit
	}{{"embedded", embeddedKit}, {"stepca", stepcaKit}} {
		t.Run(tc.name, func(t *testing.T) { rolloutLDAPSuite(t, tc.kit(t)) })
	}
}

func rolloutLDAPSuite(t *testing.T, kit issuerKit) {
	ctx := context.Background()
	ldif, eligible, aliases := directoryLDIF()
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: suffix, LDIF: ldif})
	dirSrc, err := pki.NewLDAPDirectory(pki.LDAPConfig{
		URL: slapd.URL, BindDN: slapd.RootDN, BindPassword: slapd.RootPW, BaseDN: suffix, AllowPlaintextBind: true,
		GroupBaseDN: "ou=groups," + suffix, Groups: []string{"sales", "eng", "board"},
		Timeout: 5 * time.Second, ReadPublished: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	m := &pki.Manager{Store: st, Issuer: kit.issuer, Users: dirSrc, Publisher: dirSrc, KeyType: pki.RSA2048,
		Validity: 365 * 24 * time.Hour, RenewBefore: 30 * 24 * time.Hour}

	plan, err := m.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := plan.Count(pki.ActionIssue); n != len(eligible) || len(plan.Steps) != len(eligible) {
		t.Fatalf("plan issues %d of %d steps, want exactly the %d eligible users", n, len(plan.Steps), len(eligible))
	}
	for _, s := range plan.Steps {
		if !eligible[s.Email] {
			t.Fatalf("plan includes ineligible %s", s.Email)
		}
	}

	// Killed halfway: cancel after 40 users, then run again.
	cctx, cancel := context.WithCancel(ctx)
	var once sync.Once
	res := m.Apply(cctx, plan, pki.ApplyOptions{Parallel: 4, Progress: func(done, _ int) {
		if done >= 40 {
			once.Do(cancel)
		}
	}})
	cancel()
	t.Logf("interrupted: issued %d, failed %d", res.Issued, res.Failed)
	if res.Failed == 0 || res.Issued < 40 {
		t.Fatalf("interrupted run: %+v", res)
	}
	res = mustSync(t, m)
	t.Logf("rerun: %+v", res)
	if res.Failed != 0 {
		t.Fatalf("rerun: %+v", res)
	}
	for email := range eligible {
		certs, _ := st.Certificates(ctx, email)
		if len(certs) != 1 {
			t.Fatalf("%s has %d certificates after interrupted run + rerun", email, len(certs))
		}
	}
	if all, _ := st.Certificates(ctx, ""); len(all) != len(eligible) {
		t.Fatalf("%d certificates for %d eligible users", len(all), len(eligible))
	}

	// openssl: every certificate passes both purposes; aliases are SANs.
	dir := t.TempDir()
	var files []string
	for email := range eligible {
		c, _ := m.Current(ctx, email)
		files = append(files, writePEM(t, filepath.Join(dir, email+".pem"), c.DER))
		x, _ := x509.ParseCertificate(c.DER)
		want := 1
		if a := aliases[email]; a != "" {
			want = 2
			if x.EmailAddresses[1] != a {
				t.Errorf("%s SANs %v lack alias %s", email, x.EmailAddresses, a)
			}
		}
		if len(x.EmailAddresses) != want || x.EmailAddresses[0] != email {
			t.Errorf("%s SANs = %v", email, x.EmailAddresses)
		}
	}
	for _, purpose := range []string{"smimesign", "smimeencrypt"} {
		out := string(testpeer.MustRun(t, nil, "openssl", append([]string{"verify", "-CAfile", kit.rootPEM, "-untrusted", kit.chain, "-purpose", purpose}, files...)...))
		if n := strings.Count(out, ": OK"); n != len(files) {
			t.Fatalf("openssl verify -purpose %s: %d of %d OK\n%s", purpose, n, len(files), out)
		}
	}

	// Published in the directory, as slapd holds it.
	pub := slapd.Search(t, userDN(10), "(objectClass=*)", "userCertificate;binary", "userSMIMECertificate")
	if !strings.Contains(pub, "userCertificate;binary::") || !strings.Contains(pub, "userSMIMECertificate::") {
		t.Fatalf("u010 not published:\n%s", pub)
	}
	if out := slapd.Search(t, userDN(170), "(objectClass=*)", "userCertificate;binary"); strings.Contains(out, "userCertificate") {
		t.Fatalf("ineligible u170 has a certificate:\n%s", out)
	}

	// Second rollout: a no-op.
	if res := mustSync(t, m); res.Unchanged != len(eligible) || res.Published != 0 {
		t.Fatalf("second rollout not a no-op: %+v", res)
	}

	// u020 leaves sales: revoked (on the CRL per openssl) and unpublished.
	u20, _ := m.Current(ctx, userMail(20))
	slapd.Apply(t, "dn: "+groupDN("sales")+"\nchangetype: modify\ndelete: member\nmember: "+userDN(20)+"\n")
	res = mustSync(t, m)
	if res.Revoked != 1 || res.Failed != 0 {
		t.Fatalf("after removing u020: %+v", res)
	}
	if out := slapd.Search(t, userDN(20), "(objectClass=*)", "userCertificate;binary", "userSMIMECertificate"); strings.Contains(out, "ertificate") {
		t.Fatalf("u020 still published:\n%s", out)
	}
	crl := kit.crl(t)
	crlPEM := filepath.Join(dir, "crl.pem")
	os.WriteFile(crlPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}), 0o644)
	out := testpeer.MustRun(t, nil, "openssl", "crl", "-in", crlPEM, "-noout", "-text")
	if !strings.Contains(strings.ToUpper(string(out)), strings.ToUpper(u20.Serial)) {
		t.Fatalf("serial %s not on the CRL:\n%s", u20.Serial, out)
	}

	// What was published is what clients read: userSMIMECertificate is a
	// PKCS#7 certs-only that openssl opens.
	var p7b64 string
	for _, line := range strings.Split(slapd.Search(t, userDN(10), "(objectClass=*)", "userSMIMECertificate"), "\n") {
		if v, ok := strings.CutPrefix(line, "userSMIMECertificate:: "); ok {
			p7b64 = v
		}
	}
	p7, err := base64.StdEncoding.DecodeString(p7b64)
	if err != nil || len(p7) == 0 {
		t.Fatalf("userSMIMECertificate of u010: %q %v", p7b64, err)
	}
	p7File := filepath.Join(dir, "u010.p7c")
	os.WriteFile(p7File, p7, 0o644)
	if out := testpeer.MustRun(t, nil, "openssl", "pkcs7", "-inform", "DER", "-in", p7File, "-print_certs", "-noout"); !strings.Contains(string(out), "u010@example.test") {
		t.Fatalf("openssl pkcs7 -print_certs: %s", out)
	}

	// A hanging directory: the plan fails with a clear error instead of
	// revoking everybody.
	slapd.Freeze(t)
	defer slapd.Thaw(t)
	if _, err := m.Plan(ctx); err == nil || !strings.Contains(err.Error(), "reading users") {
		t.Fatalf("plan against a hanging directory: %v", err)
	}
}
