package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
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

// sgJSON runs a command with -o json and decodes its output into a fresh
// T, refusing fields T does not know: the JSON output is a contract, and a
// renamed field must fail here rather than read as zero.
func sgJSON[T any](t *testing.T, cfg string, args ...string) T {
	t.Helper()
	out := mustSG(t, cfg, append([]string{"-o", "json"}, args...)...)
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var v T
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("sealgate %s: decoding its JSON into %T: %v\n%s", strings.Join(args, " "), v, err, out)
	}
	if dec.More() {
		t.Fatalf("sealgate %s: more than one JSON value:\n%s", strings.Join(args, " "), out)
	}
	return v
}

// writeTestFile writes a file the test needs, failing the test if it cannot.
func writeTestFile(t *testing.T, path string, content []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, content, perm); err != nil {
		t.Fatal(err)
	}
}

// TestPKICommands drives pki init/rollout/status/ca-cert and cert
// show/revoke/export through the CLI, and hands the exported PKCS#12 to
// openssl, gpgsm and NSS, which must decrypt a message openssl encrypted
// to the certificate.
func TestPKICommands(t *testing.T) {
	testpeer.Require(t, "openssl")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sealgate.toml")
	writeTestFile(t, cfg, []byte(pkiTestConfig), 0o600)

	if code, _, errs := sg(t, cfg, "pki", "rollout"); code != 1 || !strings.Contains(errs, "pki init") {
		t.Fatalf("rollout before init: exit %d, %s", code, errs)
	}
	mustSG(t, cfg, "pki", "init")
	if initRes := sgJSON[pkiInitResult](t, cfg, "pki", "init"); initRes.Created || initRes.RootFingerprint == "" {
		t.Fatalf("second pki init: %+v, want the existing CA (created false, its fingerprint)", initRes)
	}
	plan := sgJSON[planJSON](t, cfg, "pki", "rollout", "--dry-run")
	if want := map[string]int{"issue": 2}; !plan.DryRun || !reflect.DeepEqual(plan.Counts, want) || len(plan.Steps) != 2 {
		t.Fatalf("dry run plan: %+v, want dry_run, counts %v and 2 steps", plan, want)
	}
	if res, want := sgJSON[pki.Result](t, cfg, "pki", "rollout", "--parallel", "2"), (pki.Result{Issued: 2, Errors: []pki.StepError{}}); !reflect.DeepEqual(res, want) {
		t.Fatalf("rollout: %+v, want %+v", res, want)
	}
	if res, want := sgJSON[pki.Result](t, cfg, "pki", "rollout"), (pki.Result{Unchanged: 2, Errors: []pki.StepError{}}); !reflect.DeepEqual(res, want) {
		t.Fatalf("second rollout: %+v, want %+v", res, want)
	}
	// A rollout while another holds the PKI lock stops with a clear error.
	lf, err := os.OpenFile(filepath.Join(dir, "data", "pki.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := sg(t, cfg, "pki", "rollout"); code != 1 || !strings.Contains(errs, "another rollout") {
		t.Fatalf("rollout under lock: exit %d %s", code, errs)
	}
	lf.Close()

	status := sgJSON[[]statusJSON](t, cfg, "pki", "status")
	if len(status) != 2 {
		t.Fatalf("status: %+v, want alice and bob", status)
	}
	for i, email := range []string{"alice@example.org", "bob@example.org"} {
		if s := status[i]; s.Email != email || s.State != "active" || s.Serial == "" || s.NotAfter == "" {
			t.Errorf("status[%d] = %+v, want %s active with serial and expiry", i, s, email)
		}
	}

	chain := filepath.Join(dir, "chain.pem")
	writeTestFile(t, chain, []byte(mustSG(t, cfg, "pki", "ca-cert")), 0o644)
	show := sgJSON[certJSON](t, cfg, "cert", "show", "alice@example.org")
	if want := []string{"alice@example.org", "a.example@example.org"}; show.Email != "alice@example.org" || show.State != "active" ||
		show.Serial != status[0].Serial || !reflect.DeepEqual(show.Addresses, want) {
		t.Fatalf("cert show alice: %+v, want active, serial %s, addresses %v", show, status[0].Serial, want)
	}
	alice := filepath.Join(dir, "alice.pem")
	writeTestFile(t, alice, []byte(show.Certificate), 0o644)
	for _, p := range []string{"smimesign", "smimeencrypt"} {
		testpeer.MustRun(t, nil, "openssl", "verify", "-CAfile", chain, "-purpose", p, alice)
	}

	refusals := []struct {
		name      string
		args      []string
		code      int
		errSubstr string
	}{
		{"issuing to a non-member", []string{"cert", "issue", "eve@example.org"}, 1, "eve@example.org is not an eligible user"},
		{"bad --reason", []string{"cert", "revoke", "bob@example.org", "--reason", "bogus"}, 2, `--reason "bogus" is not one of`},
	}
	for _, r := range refusals {
		if code, _, errs := sg(t, cfg, r.args...); code != r.code || !strings.Contains(errs, r.errSubstr) {
			t.Fatalf("%s: exit %d, stderr %q; want exit %d and %q", r.name, code, errs, r.code, r.errSubstr)
		}
	}
	mustSG(t, cfg, "cert", "revoke", "bob@example.org", "--reason", "keyCompromise")
	if bob := sgJSON[certJSON](t, cfg, "cert", "show", "bob@example.org"); bob.State != "revoked" || bob.RevocationReason != "keyCompromise" || bob.RevokedAt == "" {
		t.Fatalf("bob after revoke: %+v", bob)
	}

	// PKCS#12 export, legacy profile.
	pw := filepath.Join(dir, "pw")
	writeTestFile(t, pw, []byte("correct horse\n"), 0o600)
	p12 := filepath.Join(dir, "alice.p12")
	if code, _, _ := sg(t, cfg, "cert", "export", "alice@example.org", "--p12", p12); code != 2 {
		t.Fatalf("export without --password-file: exit %d", code)
	}
	mustSG(t, cfg, "cert", "export", "alice@example.org", "--p12", p12, "--password-file", pw)
	st, err := os.Stat(p12)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("p12 mode %v, want 0600", st.Mode())
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
	writeTestFile(t, msg, []byte("Subject: x\r\n\r\nsecret payload 4711\r\n"), 0o644)
	enc := filepath.Join(dir, "enc.der")
	testpeer.MustRun(t, nil, "openssl", "cms", "-encrypt", "-aes256", "-binary", "-in", msg, "-outform", "DER", "-out", enc, alice)

	t.Run("gpgsm", func(t *testing.T) {
		testpeer.Require(t, "gpgsm")
		home := filepath.Join(t.TempDir(), "gnupg")
		if err := os.Mkdir(home, 0o700); err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, filepath.Join(home, "gpgsm.conf"), []byte("disable-crl-checks\ndisable-policy-checks\npinentry-mode loopback\n"), 0o600)
		writeTestFile(t, filepath.Join(home, "gpg-agent.conf"), []byte("allow-loopback-pinentry\n"), 0o600)
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
		writeTestFile(t, filepath.Join(home, "trustlist.txt"), []byte(fpr+" S relax\n"), 0o600)
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
	t.Helper()
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	var last *pem.Block
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		last = blk
	}
	if last == nil {
		t.Fatalf("%s holds no PEM block", bundle)
	}
	f := bundle + ".root.pem"
	writeTestFile(t, f, pem.EncodeToMemory(last), 0o644)
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
	writeTestFile(t, filepath.Join(dir, "bind.pw"), []byte(slapd.RootPW+"\n"), 0o600)
	cfg := filepath.Join(dir, "sealgate.toml")
	writeTestFile(t, cfg, []byte(fmt.Sprintf(`data_dir = "./data"
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
# slapd on loopback, no TLS
allow_plaintext_bind = true
publish_certificates = true
`, slapd.URL, slapd.RootDN, suffix)), 0o600)
	mustSG(t, cfg, "pki", "init")
	if res, want := sgJSON[pki.Result](t, cfg, "pki", "rollout"), (pki.Result{Issued: 2, Published: 2, Errors: []pki.StepError{}}); !reflect.DeepEqual(res, want) {
		t.Fatalf("rollout: %+v, want %+v", res, want)
	}
	if out := slapd.Search(t, "uid=ben,ou=people,"+suffix, "(objectClass=*)", "userCertificate;binary"); !strings.Contains(out, "userCertificate;binary::") {
		t.Fatalf("ben not published:\n%s", out)
	}
	if res, want := sgJSON[pki.Result](t, cfg, "pki", "rollout"), (pki.Result{Unchanged: 2, Errors: []pki.StepError{}}); !reflect.DeepEqual(res, want) {
		t.Fatalf("second rollout: %+v, want %+v", res, want)
	}
}
