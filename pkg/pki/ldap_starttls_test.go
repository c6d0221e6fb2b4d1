package pki_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
)

// TestLDAPStartTLS runs the users source through a proxy that records
// what the client sends, in front of slapd's ldap:// port: with StartTLS
// the bind password never crosses the wire in clear text, and when the
// upgrade fails (server without TLS, as a man in the middle stripping
// StartTLS answers; certificate from an untrusted CA) the client stops
// before the bind instead of falling back to plain text.
func TestLDAPStartTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testpeer.WriteServerCert(t, dir, "ldap.example.test")
	otherCA, _ := testpeer.WriteServerCert(t, t.TempDir(), "other.example.test")
	ldif := publishLDIF(2) + "dn: cn=sales," + suffix + "\nobjectClass: groupOfNames\ncn: sales\nmember: " + userDN(1) + "\n\n"
	withTLS := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: suffix, LDIF: ldif, TLSCertFile: certFile, TLSKeyFile: keyFile})
	withoutTLS := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: suffix, LDIF: ldif})

	for _, tc := range []struct {
		name      string
		server    *testpeer.Slapd
		startTLS  bool
		plaintext bool // AllowPlaintextBind
		trust     *tls.Config
		wantErr   string // "" for success
		wantClear bool   // the password is expected on the wire
	}{
		{name: "StartTLS with the CA in ca_file", server: withTLS, startTLS: true, trust: testpeer.TrustFile(t, certFile)},
		{name: "StartTLS to a server whose CA is not trusted", server: withTLS, startTLS: true, trust: testpeer.TrustFile(t, otherCA), wantErr: "users.ldap.ca_file"},
		{name: "StartTLS without ca_file (system roots)", server: withTLS, startTLS: true, wantErr: "StartTLS with"},
		{name: "StartTLS refused by the server", server: withoutTLS, startTLS: true, trust: testpeer.TrustFile(t, certFile), wantErr: "StartTLS with"},
		{name: "plain bind allowed explicitly goes out in clear text", server: withTLS, plaintext: true, wantClear: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := testpeer.StartRecordingProxy(t, tc.server.Addr)
			d, err := pki.NewLDAPDirectory(pki.LDAPConfig{URL: proxy.URL(), BindDN: tc.server.RootDN, BindPassword: tc.server.RootPW,
				StartTLS: tc.startTLS, AllowPlaintextBind: tc.plaintext, TLS: tc.trust,
				BaseDN: suffix, Groups: []string{"sales"}, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			users, err := d.Users(context.Background())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr == "" && (len(users) != 1 || users[0].Email != userMail(1)):
				t.Fatalf("users %+v, want %s", users, userMail(1))
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tc.server.RootPW) {
				t.Fatalf("error reveals the bind password: %v", err)
			}
			if clear := bytes.Contains(proxy.Sent(), []byte(tc.server.RootPW)); clear != tc.wantClear {
				t.Fatalf("bind password readable on the wire = %v, want %v", clear, tc.wantClear)
			}
		})
	}
}

// TestLDAPPlaintextBindRefused: a configuration that would bind with a
// password over ldap:// without StartTLS is refused before any connection
// is made, and StartTLS on an ldaps:// URL is a contradiction, not
// ignored.
func TestLDAPPlaintextBindRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  pki.LDAPConfig
		want string // "" when the configuration is accepted
	}{
		{"simple bind over ldap://", pki.LDAPConfig{URL: "ldap://dc1.example.test:389", BindDN: "cn=svc"}, "clear text"},
		{"simple bind over ldap:// allowed explicitly", pki.LDAPConfig{URL: "ldap://127.0.0.1:389", BindDN: "cn=svc", AllowPlaintextBind: true}, ""},
		{"simple bind after StartTLS", pki.LDAPConfig{URL: "ldap://dc1.example.test:389", BindDN: "cn=svc", StartTLS: true}, ""},
		{"simple bind over ldaps://", pki.LDAPConfig{URL: "ldaps://dc1.example.test:636", BindDN: "cn=svc"}, ""},
		{"anonymous over ldap://", pki.LDAPConfig{URL: "ldap://dc1.example.test:389"}, ""},
		{"StartTLS on ldaps://", pki.LDAPConfig{URL: "ldaps://dc1.example.test:636", StartTLS: true}, "needs an ldap:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.BaseDN, tc.cfg.Groups, tc.cfg.BindPassword = suffix, []string{"sales"}, "s3cret-bind-pw"
			d, err := pki.NewLDAPDirectory(tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				d.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.cfg.BindPassword) {
				t.Fatalf("error reveals the bind password: %v", err)
			}
		})
	}
}
