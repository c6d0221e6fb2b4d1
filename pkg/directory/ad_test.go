package directory

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
)

// TestKeyserverActiveDirectory: a corporate AD (a real Samba DC) as a
// keyserver, configured as a customer would: ldaps:// with the DC's
// certificate in ca_file and an ordinary account to bind (AD refuses
// anonymous searches). AD stores certificates in userCertificate without the
// ;binary option; lookups by mail and by an smtp: proxy address find them,
// and a certificate only in userSMIMECertificate (PKCS#7 made by openssl)
// is found too.
func TestKeyserverActiveDirectory(t *testing.T) {
	testpeer.Require(t, "openssl")
	dir := t.TempDir()
	mailCA := newTestCA(t, "Mail CA", true)
	alice := mailCA.issue(t, leafSpec{emails: []string{"alice@example.test", "a.alias@example.test"}})
	bob := mailCA.issue(t, leafSpec{emails: []string{"bob@example.test"}})
	bobP7 := testpeer.MustRun(t, nil, "openssl", "crl2pkcs7", "-nocrl", "-outform", "DER",
		"-certfile", writeFile(t, dir, "bob.pem", certPEM(bob)))

	ad := testpeer.StartSambaAD(t)
	ou := "OU=Staff," + ad.BaseDN
	ad.Apply(t, fmt.Sprintf("dn: %s\nobjectClass: organizationalUnit\n\n", ou)+
		testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Alice," + ou, SAMAccountName: "alice", Mail: "alice@example.test",
			ProxyAddresses: []string{"SMTP:alice@example.test", "smtp:a.alias@example.test"}})+
		testpeer.UserLDIF(testpeer.ADUser{DN: "CN=Bob," + ou, SAMAccountName: "bob", Mail: "bob@example.test"})+
		fmt.Sprintf("dn: CN=Alice,%s\nchangetype: modify\nadd: userCertificate\nuserCertificate:: %s\n\n", ou, base64.StdEncoding.EncodeToString(alice.Raw))+
		fmt.Sprintf("dn: CN=Bob,%s\nchangetype: modify\nadd: userSMIMECertificate\nuserSMIMECertificate:: %s\n\n", ou, base64.StdEncoding.EncodeToString(bobP7)))
	// Searching needs no rights beyond an ordinary account's.
	reader := "CN=svc-reader,CN=Users," + ad.BaseDN
	ad.Apply(t, testpeer.UserLDIF(testpeer.ADUser{DN: reader, SAMAccountName: "svc-reader"}))

	toml := fmt.Sprintf(`data_dir = %q
[relay]
mode = "dir"
dir = %q
[[keyservers]]
name = "ad"
url = %q
base_dn = %q
bind_dn = %q
bind_password_file = %q
ca_file = %q
[trust]
ca_files = [%q]
system_roots = false
revocation = "hard-fail"
`, filepath.Join(dir, "data"), filepath.Join(dir, "out"), ad.LDAPSURL, ad.BaseDN, reader,
		writeFile(t, dir, "bindpw", []byte(testpeer.SambaUserPW)), ad.CAFile, writeFile(t, dir, "mail-ca.pem", certPEM(mailCA.cert)))
	cfg, err := config.Parse([]byte(toml), filepath.Join(dir, "sealgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewFromConfig(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tc := range []struct {
		name, email string
		want        []byte
	}{
		{"userCertificate by mail", "alice@example.test", alice.Raw},
		{"userCertificate by proxy address", "a.alias@example.test", alice.Raw},
		{"userSMIMECertificate only", "bob@example.test", bob.Raw},
		{"no entry", "carol@example.test", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := d.Lookup(context.Background(), tc.email)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if r.Found {
					t.Fatalf("found a certificate for %s: %+v", tc.email, r)
				}
				return
			}
			if !r.Found || string(r.Certificate().Raw) != string(tc.want) || r.Chosen.Source != "keyserver ad" {
				t.Fatalf("lookup %s: %+v", tc.email, r)
			}
		})
	}
}
