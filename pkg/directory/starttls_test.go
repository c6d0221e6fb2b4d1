package directory

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestKeyserverStartTLS runs a key server lookup with a bind through a
// proxy that records what the client sends, in front of slapd's ldap://
// port: with StartTLS neither the bind password nor the address searched
// for crosses the wire in clear text, and when the upgrade fails (server
// without TLS, as a man in the middle stripping StartTLS answers;
// certificate from an untrusted CA) the lookup fails instead of falling
// back to plain text.
func TestKeyserverStartTLS(t *testing.T) {
	testpeer.Require(t, "slapd")
	dir := t.TempDir()
	certFile, keyFile := testpeer.WriteServerCert(t, dir, "keys.example.test")
	otherCA, _ := testpeer.WriteServerCert(t, t.TempDir(), "other.example.test")
	ca := newTestCA(t, "Partner Root", false)
	partner := ca.issue(t, leafSpec{emails: []string{"partner@example.test"}})
	ldif := entriesLDIF([]ldapEntry{{uid: "partner", mail: "partner@example.test", certs: []*x509.Certificate{partner}}})
	withTLS := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: "dc=example,dc=test", LDIF: ldif, TLSCertFile: certFile, TLSKeyFile: keyFile})
	withoutTLS := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: "dc=example,dc=test", LDIF: ldif})

	for _, tc := range []struct {
		name      string
		server    *testpeer.Slapd
		startTLS  bool
		plaintext bool
		trust     *tls.Config
		wantErr   string
		wantClear bool
	}{
		{name: "StartTLS with the CA in ca_file", server: withTLS, startTLS: true, trust: testpeer.TrustFile(t, certFile)},
		{name: "StartTLS to a server whose CA is not trusted", server: withTLS, startTLS: true, trust: testpeer.TrustFile(t, otherCA), wantErr: "ca_file"},
		{name: "StartTLS refused by the server", server: withoutTLS, startTLS: true, trust: testpeer.TrustFile(t, certFile), wantErr: "StartTLS"},
		{name: "plain bind allowed explicitly goes out in clear text", server: withTLS, plaintext: true, wantClear: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := testpeer.StartRecordingProxy(t, tc.server.Addr)
			ks, err := NewLDAPSource(LDAPSourceOptions{Name: "partners", URL: proxy.URL(), BaseDN: "dc=example,dc=test",
				BindDN: tc.server.RootDN, BindPassword: []byte(tc.server.RootPW), StartTLS: tc.startTLS,
				AllowPlaintextBind: tc.plaintext, TLSConfig: tc.trust, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer ks.Close()
			cands, err := ks.Find(context.Background(), "partner@example.test")
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr == "" && len(cands) != 1:
				t.Fatalf("%d candidates, want the partner's certificate", len(cands))
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrSourceUnavailable)):
				t.Fatalf("error %v, want an unavailable source saying %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tc.server.RootPW) {
				t.Fatalf("error reveals the bind password: %v", err)
			}
			sent := proxy.Sent()
			if clear := bytes.Contains(sent, []byte(tc.server.RootPW)); clear != tc.wantClear {
				t.Fatalf("bind password readable on the wire = %v, want %v", clear, tc.wantClear)
			}
			if tc.startTLS && bytes.Contains(sent, []byte("partner@example.test")) {
				t.Fatal("the searched address crossed the wire in clear text")
			}
		})
	}
}

// TestKeyserverPlaintextBindRefused: a key server that would bind with a
// password over ldap:// without StartTLS is refused before any connection.
func TestKeyserverPlaintextBindRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    LDAPSourceOptions
		want string
	}{
		{"simple bind over ldap://", LDAPSourceOptions{URL: "ldap://keys.example.test", BindDN: "cn=svc"}, "clear text"},
		{"allowed explicitly", LDAPSourceOptions{URL: "ldap://127.0.0.1", BindDN: "cn=svc", AllowPlaintextBind: true}, ""},
		{"after StartTLS", LDAPSourceOptions{URL: "ldap://keys.example.test", BindDN: "cn=svc", StartTLS: true}, ""},
		{"over ldaps://", LDAPSourceOptions{URL: "ldaps://keys.example.test", BindDN: "cn=svc"}, ""},
		{"anonymous over ldap://", LDAPSourceOptions{URL: "ldap://keys.example.test"}, ""},
		{"StartTLS on ldaps://", LDAPSourceOptions{URL: "ldaps://keys.example.test", StartTLS: true}, "needs an ldap:// URL"},
		{"not an LDAP URL", LDAPSourceOptions{URL: "http://keys.example.test"}, "not an ldap://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Name, tc.o.BaseDN, tc.o.BindPassword = "partners", "dc=example,dc=test", []byte("s3cret-bind-pw")
			ks, err := NewLDAPSource(tc.o)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				ks.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret-bind-pw") {
				t.Fatalf("error %v, want one saying %q without the password", err, tc.want)
			}
		})
	}
}
