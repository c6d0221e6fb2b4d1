package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

const pkiTestConfig = `data_dir = "./data"
[relay]
mode = "dir"
dir = "./data/outbox"
[pki]
key_type = "rsa2048"
crl_url = "http://ca.example.org/crl"
[users]
source = "static"
groups = ["smime-users"]
[[users.static]]
email = "alice@example.org"
name = "Alice Example"
aliases = ["a.example@example.org"]
groups = ["smime-users"]
[[users.static]]
email = "bob@example.org"
groups = ["smime-users"]
[[users.static]]
email = "eve@example.org"
groups = ["contractors"]
`

// sg runs the CLI in-process and returns exit code, stdout and stderr.
func sg(t *testing.T, cfg string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"--config", cfg}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func mustSG(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	code, out, errs := sg(t, cfg, args...)
	if code != 0 {
		t.Fatalf("sealgate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// TestPKICommands drives pki init/rollout/status/ca-cert and cert
// show/revoke/export through the CLI, and hands the exported PKCS#12 to
// openssl, gpgsm and NSS, which must decrypt a message openssl encrypted
// to the certificate.
func TestPKICommands(t *testing.T) {
	testpeer.Require(t, "openssl")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.toml")
	os.WriteFile(cfg, []byte(pkiTestConfig), 0o600)

	if code, _, errs := sg(t, cfg, "pki", "rollout"); code != 1 || !strings.Contains(errs, "pki init") {
		t.Fatalf("rollout before init: exit %d, %s", code, errs)
	}
	mustSG(t, cfg, "pki", "init")
	var initRes struct{ Created bool }
	json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "pki", "init")), &initRes)
	if initRes.Created {
		t.Fatal("second pki init created a new CA")
	}
	var res map[string]any
	json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "pki", "rollout", "--dry-run")), &res)
	if res["counts"].(map[string]any)["issue"].(float64) != 2 {
		t.Fatalf("dry run plan: %v", res)
	}
	json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "pki", "rollout", "--parallel", "2")), &res)
	if res["issued"].(float64) != 2 || res["failed"].(float64) != 0 {
		t.Fatalf("rollout: %v", res)
	}
	json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "pki", "rollout")), &res)
	if res["unchanged"].(float64) != 2 || res["issued"].(float64) != 0 {
		t.Fatalf("second rollout: %v", res)
	}
	// A rollout while another holds the PKI lock stops with a clear error.
	lf, err := os.OpenFile(filepath.Join(dir, "data", "pki.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Flock(int(lf.Fd()), syscall.LOCK_EX)
	if code, _, errs := sg(t, cfg, "pki", "rollout"); code != 1 || !strings.Contains(errs, "another rollout") {
		t.Fatalf("rollout under lock: exit %d %s", code, errs)
	}
	lf.Close()

	var status []map[string]string
	json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "pki", "status")), &status)
	if len(status) != 2 || status[0]["email"] != "alice@example.org" || status[0]["state"] != "active" || status[0]["serial"] == "" {
		t.Fatalf("status: %v", status)
	}

	chain := filepath.Join(dir, "chain.pem")
	os.WriteFile(chain, []byte(mustSG(t, cfg, "pki", "ca-cert")), 0o644)
	var show struct{ Certificate, Serial string }
	json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "cert", "show", "alice@example.org")), &show)
	alice := filepath.Join(dir, "alice.pem")
	os.WriteFile(alice, []byte(show.Certificate), 0o644)
	for _, p := range []string{"smimesign", "smimeencrypt"} {
		testpeer.MustRun(t, nil, "openssl", "verify", "-CAfile", chain, "-purpose", p, alice)
	}

	if code, _, _ := sg(t, cfg, "cert", "issue", "eve@example.org"); code != 1 {
		t.Fatalf("issuing to a non-member: exit %d, want 1", code)
	}
	if code, _, _ := sg(t, cfg, "cert", "revoke", "bob@example.org", "--reason", "bogus"); code != 2 {
		t.Fatalf("bad --reason: exit %d, want 2", code)
	}
	mustSG(t, cfg, "cert", "revoke", "bob@example.org", "--reason", "keyCompromise")
	var bob struct {
		State            string
		RevocationReason string `json:"revocation_reason"`
	}
	json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "cert", "show", "bob@example.org")), &bob)
	if bob.State != "revoked" || bob.RevocationReason != "keyCompromise" {
		t.Fatalf("bob after revoke: %+v", bob)
	}

	// PKCS#12 export, legacy profile.
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("correct horse\n"), 0o600)
	p12 := filepath.Join(dir, "alice.p12")
	if code, _, _ := sg(t, cfg, "cert", "export", "alice@example.org", "--p12", p12); code != 2 {
		t.Fatalf("export without --password-file: exit %d", code)
	}
	mustSG(t, cfg, "cert", "export", "alice@example.org", "--p12", p12, "--password-file", pw)
	if st, _ := os.Stat(p12); st.Mode().Perm() != 0o600 {
		t.Fatalf("p12 mode %v", st.Mode())
	}
	if code, _, _ := sg(t, cfg, "cert", "export", "alice@example.org", "--p12", p12, "--password-file", pw); code != 1 {
		t.Fatal("export overwrote an existing file")
	}
	r := testpeer.Run(t, nil, "openssl", "pkcs12", "-in", p12, "-passin", "pass:correct horse", "-info", "-nodes")
	info := append(r.Stdout, r.Stderr...)
	if r.ExitCode != 0 {
		t.Fatalf("openssl pkcs12: %s", info)
	}
	for _, want := range []string{"pbeWithSHA1And3-KeyTripleDES-CBC", "BEGIN PRIVATE KEY", "Issuing CA", "alice@example.org"} {
		if !strings.Contains(string(info), want) {
			t.Fatalf("openssl pkcs12 -info lacks %q:\n%s", want, info)
		}
	}

	// A message encrypted by openssl (RSA PKCS#1 v1.5 + AES-256-CBC: what
	// gpgsm and NSS decrypt).
	msg := filepath.Join(dir, "msg.txt")
	os.WriteFile(msg, []byte("Subject: x\r\n\r\nsecret payload 4711\r\n"), 0o644)
	enc := filepath.Join(dir, "enc.der")
	testpeer.MustRun(t, nil, "openssl", "cms", "-encrypt", "-aes256", "-binary", "-in", msg, "-outform", "DER", "-out", enc, alice)

	t.Run("gpgsm", func(t *testing.T) {
		testpeer.Require(t, "gpgsm")
		home := filepath.Join(t.TempDir(), "gnupg")
		os.Mkdir(home, 0o700)
		os.WriteFile(filepath.Join(home, "gpgsm.conf"), []byte("disable-crl-checks\ndisable-policy-checks\npinentry-mode loopback\n"), 0o600)
		os.WriteFile(filepath.Join(home, "gpg-agent.conf"), []byte("allow-loopback-pinentry\n"), 0o600)
		env := []string{"GNUPGHOME=" + home}
		t.Cleanup(func() { testpeer.RunEnv(t, env, nil, "gpgconf", "--kill", "all") })
		gpg := func(stdin []byte, args ...string) testpeer.Result {
			return testpeer.RunEnv(t, env, stdin, "gpgsm", append([]string{"--batch", "--pinentry-mode", "loopback"}, args...)...)
		}
		if r := gpg([]byte("correct horse\n"), "--passphrase-fd", "0", "--import", p12); r.ExitCode != 0 {
			t.Fatalf("gpgsm --import p12: %s", r.Stderr)
		}
		if r := gpg(nil, "--import", chain); r.ExitCode != 0 {
			t.Fatalf("gpgsm --import chain: %s", r.Stderr)
		}
		root := lastCert(t, chain)
		fpr := strings.TrimSpace(string(testpeer.MustRun(t, nil, "openssl", "x509", "-in", root, "-noout", "-fingerprint", "-sha1")))
		fpr = strings.ReplaceAll(strings.TrimPrefix(fpr, "sha1 Fingerprint="), ":", "")
		fpr = strings.TrimPrefix(fpr, "SHA1 Fingerprint=")
		os.WriteFile(filepath.Join(home, "trustlist.txt"), []byte(fpr+" S relax\n"), 0o600)
		r := gpg([]byte("correct horse\n"), "--passphrase-fd", "0", "--decrypt", enc)
		if r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "secret payload 4711") {
			t.Fatalf("gpgsm --decrypt: exit %d\n%s\n%s", r.ExitCode, r.Stdout, r.Stderr)
		}
	})
	t.Run("nss", func(t *testing.T) {
		testpeer.Require(t, "pk12util")
		db := "sql:" + t.TempDir()
		testpeer.MustRun(t, nil, "certutil", "-N", "-d", db, "--empty-password")
		testpeer.MustRun(t, nil, "pk12util", "-i", p12, "-d", db, "-W", "correct horse", "-K", "")
		out := testpeer.MustRun(t, nil, "cmsutil", "-D", "-d", db, "-i", enc)
		if !strings.Contains(string(out), "secret payload 4711") {
			t.Fatalf("cmsutil -D: %s", out)
		}
	})
}

// lastCert writes the last certificate of a PEM bundle (the root) to a file.
func lastCert(t *testing.T, bundle string) string {
	b, _ := os.ReadFile(bundle)
	var last *pem.Block
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		last = blk
	}
	f := bundle + ".root.pem"
	os.WriteFile(f, pem.EncodeToMemory(last), 0o644)
	return f
}

// TestPKIRolloutLDAPConfig checks the wiring from [users.ldap] to a real
// slapd: bind password from its file, groups, publishing.
func TestPKIRolloutLDAPConfig(t *testing.T) {
	testpeer.Require(t, "openssl")
	const suffix = "dc=example,dc=test"
	ldif := "dn: ou=people," + suffix + "\nobjectClass: organizationalUnit\nou: people\n\n"
	for _, u := range []string{"ann", "ben", "cid"} {
		ldif += fmt.Sprintf("dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nmail: %s@example.test\n\n", u, suffix, u, u, u, u)
	}
	ldif += "dn: cn=smime-users," + suffix + "\nobjectClass: groupOfNames\ncn: smime-users\nmember: uid=ann,ou=people," + suffix + "\nmember: uid=ben,ou=people," + suffix + "\n"
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: suffix, LDIF: ldif})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bind.pw"), []byte(slapd.RootPW+"\n"), 0o600)
	cfg := filepath.Join(dir, "sealgate.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`data_dir = "./data"
[relay]
mode = "dir"
dir = "./data/outbox"
[users]
source = "ldap"
groups = ["smime-users"]
[users.ldap]
url = %q
bind_dn = %q
bind_password_file = "bind.pw"
base_dn = %q
publish_certificates = true
`, slapd.URL, slapd.RootDN, suffix)), 0o600)
	mustSG(t, cfg, "pki", "init")
	var res map[string]any
	json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "pki", "rollout")), &res)
	if res["issued"].(float64) != 2 || res["published"].(float64) != 2 {
		t.Fatalf("rollout: %v", res)
	}
	if out := slapd.Search(t, "uid=ben,ou=people,"+suffix, "(objectClass=*)", "userCertificate;binary"); !strings.Contains(out, "userCertificate;binary::") {
		t.Fatalf("ben not published:\n%s", out)
	}
	json.Unmarshal([]byte(mustSG(t, cfg, "-o", "json", "pki", "rollout")), &res)
	if res["unchanged"].(float64) != 2 || res["published"].(float64) != 0 {
		t.Fatalf("second rollout: %v", res)
	}
}
