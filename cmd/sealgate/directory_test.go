package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// opensslPKI makes a CA and leaf certificates with the openssl CLI, so the
// directory is checked against certificates our code did not write.
type opensslPKI struct {
	dir    string
	caPEM  string
	caKey  string
	leafKy string
}

func newOpensslPKI(t *testing.T) *opensslPKI {
	t.Helper()
	testpeer.Require(t, "openssl")
	p := &opensslPKI{dir: t.TempDir()}
	p.caPEM, p.caKey, p.leafKy = p.path("ca.pem"), p.path("ca.key"), p.path("leaf.key")
	testpeer.MustRun(t, nil, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", p.caKey, "-out", p.caPEM, "-subj", "/O=sealgate tests/CN=CLI Test CA", "-days", "30",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	testpeer.MustRun(t, nil, "openssl", "genrsa", "-out", p.leafKy, "2048")
	return p
}

func (p *opensslPKI) path(name string) string { return filepath.Join(p.dir, name) }

// issue makes <name>.pem and <name>.der for email with the given EKU.
func (p *opensslPKI) issue(t *testing.T, name, email, eku string) {
	t.Helper()
	p.issueDigest(t, name, email, eku, "-sha256")
}

func (p *opensslPKI) issueDigest(t *testing.T, name, email, eku, digest string) {
	t.Helper()
	p.issueWith(t, name, email, eku, digest, "")
}

// issueWithExt is issue with more x509v3 extension lines.
func (p *opensslPKI) issueWithExt(t *testing.T, name, email, eku, moreExt string) {
	t.Helper()
	p.issueWith(t, name, email, eku, "-sha256", moreExt)
}

func (p *opensslPKI) issueWith(t *testing.T, name, email, eku, digest, moreExt string) {
	t.Helper()
	ext := fmt.Sprintf("subjectAltName=email:%s\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n", email, eku) + moreExt
	extFile := p.path(name + ".ext")
	if err := os.WriteFile(extFile, []byte(ext), 0o600); err != nil {
		t.Fatal(err)
	}
	testpeer.MustRun(t, nil, "openssl", "req", "-new", "-key", p.leafKy, "-subj", "/CN="+email, "-out", p.path(name+".csr"))
	testpeer.MustRun(t, nil, "openssl", "x509", "-req", "-in", p.path(name+".csr"), "-CA", p.caPEM, "-CAkey", p.caKey,
		"-CAcreateserial", "-days", "20", digest, "-extfile", extFile, "-out", p.path(name+".pem"))
	testpeer.MustRun(t, nil, "openssl", "x509", "-in", p.path(name+".pem"), "-outform", "DER", "-out", p.path(name+".der"))
}

func (p *opensslPKI) fingerprint(t *testing.T, name string) string {
	out := testpeer.MustRun(t, nil, "openssl", "x509", "-in", p.path(name+".pem"), "-noout", "-fingerprint", "-sha256")
	_, fp, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
	return strings.ToLower(strings.ReplaceAll(fp, ":", ""))
}

func writeDirectoryConfig(t *testing.T, dir, ldapURL, caFile string) string {
	t.Helper()
	cfg := fmt.Sprintf(`data_dir = %q
[relay]
mode = "dir"
dir = %q
[pki]
master_key_file = %q
[[keyservers]]
name = "partners"
url = %q
base_dn = "dc=example,dc=test"
timeout = "1s"
[trust]
ca_files = [%q]
system_roots = false
revocation = "soft-fail"
`, filepath.Join(dir, "data"), filepath.Join(dir, "outbox"), filepath.Join(dir, "data", "master.key"), ldapURL, caFile)
	p := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDirectoryLookupCLI(t *testing.T) {
	p := newOpensslPKI(t)
	p.issue(t, "good", "good@example.test", "emailProtection")
	p.issue(t, "wrongeku", "wrongeku@example.test", "serverAuth")
	p.issue(t, "alice", "alice@partner.test", "emailProtection")
	p.issueDigest(t, "sha1", "sha1@example.test", "emailProtection", "-sha1")
	ldif := fmt.Sprintf(`dn: ou=people,dc=example,dc=test
objectClass: organizationalUnit
ou: people

dn: uid=good,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: good
cn: good
sn: good
mail: good@example.test
userCertificate;binary:< file://%s

dn: uid=wrongeku,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: wrongeku
cn: wrongeku
sn: wrongeku
mail: wrongeku@example.test
userCertificate;binary:< file://%s

dn: uid=sha1,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: sha1
cn: sha1
sn: sha1
mail: sha1@example.test
userCertificate;binary:< file://%s
`, p.path("good.der"), p.path("wrongeku.der"), p.path("sha1.der"))
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{LDIF: ldif})
	dir := t.TempDir()
	conf := writeDirectoryConfig(t, dir, slapd.URL, p.caPEM)

	// Found in the key server: JSON as INTERFACE.md promises.
	code, out, errOut := runCLI(t, "--config", conf, "--output", "json", "directory", "lookup", "good@example.test")
	if code != 0 {
		t.Fatalf("lookup good: exit %d\n%s%s", code, out, errOut)
	}
	var res struct {
		Email, Source, Certificate string
		Found                      bool
		Fingerprint                string `json:"fingerprint_sha256"`
		NotAfter                   string `json:"not_after"`
		Checks                     []struct {
			Name   string
			OK     bool
			Detail string
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if !res.Found || res.Source != "keyserver partners" || res.Fingerprint != p.fingerprint(t, "good") || res.NotAfter == "" ||
		!strings.Contains(res.Certificate, "BEGIN CERTIFICATE") || len(res.Checks) != 8 {
		t.Fatalf("unexpected lookup result: %s", out)
	}
	for _, c := range res.Checks {
		if !c.OK {
			t.Errorf("check %s failed: %s", c.Name, c.Detail)
		}
	}

	// Wrong EKU: exit 1 and --explain says why.
	code, out, _ = runCLI(t, "--config", conf, "directory", "lookup", "--explain", "wrongeku@example.test")
	if code != 1 || !strings.Contains(out, "not found (no valid certificate)") ||
		!strings.Contains(out, "FAIL  extended-key-usage") || !strings.Contains(out, "lacks emailProtection (has serverAuth)") {
		t.Fatalf("explain wrongeku: exit %d\n%s", code, out)
	}

	// An openssl certificate signed with SHA-1 is refused, and says so.
	code, out, _ = runCLI(t, "--config", conf, "directory", "lookup", "--explain", "sha1@example.test")
	if code != 1 || !strings.Contains(out, "FAIL  signature-algorithm  the certificate is signed with ECDSA-SHA1") ||
		!strings.Contains(out, "insecure algorithm") {
		t.Fatalf("explain sha1: exit %d\n%s", code, out)
	}

	// Import a PEM; the next lookup finds it in the store.
	code, out, errOut = runCLI(t, "--config", conf, "directory", "import", p.path("alice.pem"))
	if code != 0 || !strings.Contains(out, "alice@partner.test") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "--config", conf, "directory", "lookup", "--explain", "alice@partner.test")
	if code != 0 || !strings.Contains(out, "found in store") || !strings.Contains(out, "CHOSEN") {
		t.Fatalf("lookup after import: exit %d\n%s", code, out)
	}

	// `policy explain` looks the recipient up through the same directory:
	// the imported certificate makes the method S/MIME; an address with no
	// certificate (its key server answers nothing) falls back to PDF.
	code, out, errOut = runCLI(t, "--config", conf, "-o", "json", "policy", "explain", "--from", "alice@example.org", "--to", "alice@partner.test")
	if code != 0 || !strings.Contains(out, `"method": "smime"`) || !strings.Contains(out, `"certificate": true`) {
		t.Fatalf("policy explain with certificate: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "--config", conf, "-o", "json", "policy", "explain", "--from", "alice@example.org", "--to", "nobody@example.test")
	if code != 0 || !strings.Contains(out, `"method": "pdf"`) || !strings.Contains(out, `"certificate": false`) {
		t.Fatalf("policy explain without certificate: exit %d\n%s%s", code, out, errOut)
	}

	// A file that holds no certificate fails with exit 1, naming the file.
	junk := filepath.Join(dir, "junk.txt")
	_ = os.WriteFile(junk, []byte("not a certificate"), 0o600)
	if code, _, errOut = runCLI(t, "--config", conf, "directory", "import", junk); code != 1 || !strings.Contains(errOut, "junk.txt") {
		t.Fatalf("import junk: exit %d, stderr %s", code, errOut)
	}

	// The key server down: the answer says so, exit 1.
	slapd.Stop()
	code, out, _ = runCLI(t, "--config", conf, "directory", "lookup", "good@example.test")
	if code != 1 || !strings.Contains(out, "undecided (source unavailable)") || !strings.Contains(out, "unavailable: keyserver partners") {
		t.Fatalf("down keyserver: exit %d\n%s", code, out)
	}

	// A bad address is a usage error.
	if code, _, _ = runCLI(t, "--config", conf, "directory", "lookup", "not-an-address"); code != 2 {
		t.Fatalf("bad address: exit %d, want 2", code)
	}
}

// TestDirectoryHarvestOpensslSignedMail: a message signed by openssl cms
// is harvested; the signer's certificate is found afterwards, with the
// capabilities openssl announced; a tampered copy stores nothing.
func TestDirectoryHarvestOpensslSignedMail(t *testing.T) {
	p := newOpensslPKI(t)
	p.issue(t, "signer", "signer@partner.test", "emailProtection")
	dir := t.TempDir()
	// No key server: the store alone must answer.
	conf := writeDirectoryConfig(t, dir, "ldap://127.0.0.1:1", p.caPEM)
	body := filepath.Join(dir, "body.txt")
	if err := os.WriteFile(body, []byte("Hello from a partner.\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eml := testpeer.MustRun(t, nil, "openssl", "cms", "-sign", "-in", body, "-signer", p.path("signer.pem"), "-inkey", p.leafKy,
		"-certfile", p.caPEM, "-md", "sha256", "-from", "signer@partner.test", "-to", "us@example.org", "-subject", "signed")

	tampered := bytes.Replace(eml, []byte("Hello from a partner."), []byte("Hello from an attacker"), 1)
	badFile := filepath.Join(dir, "tampered.eml")
	_ = os.WriteFile(badFile, tampered, 0o600)
	if code, out, errOut := runCLI(t, "--config", conf, "directory", "import", badFile); code != 1 || !strings.Contains(errOut, "nothing harvested") {
		t.Fatalf("tampered message: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "--config", conf, "directory", "lookup", "signer@partner.test"); code != 1 || strings.Contains(out, "found in store") {
		t.Fatalf("tampered message stored something: exit %d\n%s", code, out)
	}

	emlFile := filepath.Join(dir, "signed.eml")
	_ = os.WriteFile(emlFile, eml, 0o600)
	code, out, errOut := runCLI(t, "--config", conf, "directory", "import", emlFile)
	if code != 0 || !strings.Contains(out, "signer@partner.test") || !strings.Contains(out, "harvest") || !strings.Contains(out, "capabilities") {
		t.Fatalf("harvest: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "--config", conf, "--output", "json", "directory", "lookup", "signer@partner.test")
	var res struct {
		Found        bool
		Source       string
		Fingerprint  string `json:"fingerprint_sha256"`
		Capabilities []string
		Unavailable  []string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	// openssl announces AES-256-CBC first by default.
	if code != 0 || !res.Found || res.Source != "store" || res.Fingerprint != p.fingerprint(t, "signer") ||
		len(res.Capabilities) == 0 || res.Capabilities[0] != "aes256-CBC" {
		t.Fatalf("lookup after harvest: exit %d\n%s", code, out)
	}
	// The store answered, so the dead key server after it was not asked.
	if len(res.Unavailable) != 0 {
		t.Errorf("key server asked although the store had a valid certificate: %v", res.Unavailable)
	}
}
