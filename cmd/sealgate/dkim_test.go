package main

import (
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/pkg/delivery/dkim"
)

// dkimConfig writes a config with [dkim] for example.org and returns its
// path and the key file's.
func dkimTestConfig(t *testing.T, dkimSection string) (cfgPath, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "sealgate.toml")
	doc := "data_dir = \"data\"\n[relay]\nmode = \"dir\"\ndir = \"out\"\n" + dkimSection
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, filepath.Join(dir, "data", "dkim.key")
}

var zoneLine = regexp.MustCompile(`^sealgate\._domainkey\.example\.org\. IN TXT ("[^"]{1,255}" ?)+$`)

func TestDKIMKeygen(t *testing.T) {
	for _, alg := range []string{"rsa", "ed25519"} {
		t.Run(alg, func(t *testing.T) {
			cfg, key := dkimTestConfig(t, "[dkim]\ndomains = [\"example.org\"]\n")
			// Before the key exists, config check says how to make it.
			code, _, stderr := runCLI(t, "config", "check", "--config", cfg)
			if code != 2 || !strings.Contains(stderr, "dkim.key_file") || !strings.Contains(stderr, "sealgate dkim keygen") {
				t.Fatalf("config check without a key: exit %d\n%s", code, stderr)
			}
			code, stdout, stderr := runCLI(t, "dkim", "keygen", "--algorithm", alg, "--config", cfg)
			if code != 0 {
				t.Fatalf("keygen: exit %d\n%s", code, stderr)
			}
			line := strings.TrimSpace(stdout)
			if !zoneLine.MatchString(line) || !strings.Contains(line, "k="+alg) {
				t.Fatalf("record %q", line)
			}
			st, err := os.Stat(key)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v %v", st, err)
			}
			k, err := dkim.LoadKey(key)
			if err != nil || dkim.Algorithm(k) != alg {
				t.Fatalf("key: %v", err)
			}
			if strings.Contains(stdout+stderr, "PRIVATE") {
				t.Errorf("keygen printed the private key")
			}
			if code, _, stderr := runCLI(t, "config", "check", "--config", cfg); code != 0 {
				t.Fatalf("config check with the key: exit %d\n%s", code, stderr)
			}
			// record prints the same for the key on disk.
			code, again, _ := runCLI(t, "dkim", "record", "--config", cfg)
			if code != 0 || strings.TrimSpace(again) != line {
				t.Fatalf("record: exit %d %q, want %q", code, again, line)
			}
			// A second keygen would make the published record useless.
			code, _, stderr = runCLI(t, "dkim", "keygen", "--config", cfg)
			if code != 2 || !strings.Contains(stderr, "--force") {
				t.Fatalf("keygen over an existing key: exit %d\n%s", code, stderr)
			}
			if k2, err := dkim.LoadKey(key); err != nil || !k2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
				t.Fatal("the key changed without --force")
			}
			if code, _, stderr := runCLI(t, "dkim", "keygen", "--force", "--config", cfg); code != 0 {
				t.Fatalf("keygen --force: exit %d\n%s", code, stderr)
			}
			if k2, _ := dkim.LoadKey(key); k2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
				t.Fatal("--force kept the old key")
			}
		})
	}
}

func TestDKIMRecordJSONAndFlags(t *testing.T) {
	cfg, _ := dkimTestConfig(t, "[dkim]\nselector = \"s1\"\ndomains = [\"example.org\", \"Mail.Example.org\"]\n")
	if code, _, stderr := runCLI(t, "dkim", "keygen", "--algorithm", "ed25519", "--config", cfg); code != 0 {
		t.Fatal(stderr)
	}
	code, stdout, _ := runCLI(t, "dkim", "record", "--output", "json", "--config", cfg)
	var got struct {
		Algorithm, Selector string
		Records             []struct {
			Domain, Name, Value, Zone string
			TXT                       []string
		}
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &got) != nil {
		t.Fatalf("exit %d %s", code, stdout)
	}
	if got.Algorithm != "ed25519" || got.Selector != "s1" || len(got.Records) != 2 ||
		got.Records[1].Name != "s1._domainkey.mail.example.org." || !strings.HasPrefix(got.Records[0].Value, "v=DKIM1; k=ed25519; p=") {
		t.Fatalf("%+v", got)
	}
	code, stdout, _ = runCLI(t, "dkim", "record", "--selector", "other", "--domain", "example.net", "--config", cfg)
	if code != 0 || !strings.HasPrefix(stdout, "other._domainkey.example.net. IN TXT \"v=DKIM1; k=ed25519;") {
		t.Fatalf("exit %d %q", code, stdout)
	}
	for _, bad := range [][]string{
		{"dkim", "keygen", "--algorithm", "dsa"},
		{"dkim", "record", "--selector", "a b"},
		{"dkim", "record", "--domain", "not a domain"},
	} {
		if code, _, stderr := runCLI(t, append(bad, "--config", cfg)...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", bad, code, stderr)
		}
	}
}

// An exposed key is refused by config check and by serve's wiring, and
// neither error shows key material.
func TestDKIMExposedKeyRefused(t *testing.T) {
	cfg, key := dkimTestConfig(t, "[dkim]\ndomains = [\"example.org\"]\n")
	if code, _, stderr := runCLI(t, "dkim", "keygen", "--config", cfg); code != 0 {
		t.Fatal(stderr)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "config", "check", "--config", cfg)
	if code != 2 || !strings.Contains(stderr, "chmod 600") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if strings.Contains(stdout+stderr, "MII") || strings.Contains(stdout+stderr, "PRIVATE KEY-") {
		t.Errorf("key material in the output")
	}
	if code, _, stderr := runCLI(t, "dkim", "record", "--config", cfg); code != 2 || !strings.Contains(stderr, "chmod 600") {
		t.Fatalf("record with an exposed key: exit %d\n%s", code, stderr)
	}
}

// A domain the config's form check lets through but DNS cannot carry
// (an IDN that does not convert) is named by config check, not found
// when serve starts.
func TestDKIMConfigCheckDomains(t *testing.T) {
	cfg, _ := dkimTestConfig(t, "[dkim]\ndomains = [\"example.org\", \"xn--a.example\"]\n")
	code, _, stderr := runCLI(t, "config", "check", "--config", cfg)
	if code != 2 || !strings.Contains(stderr, "dkim.domains[1]") || strings.Contains(stderr, "dkim.domains[0]") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	// keygen refuses the file too rather than print a record for it.
	if code, _, stderr := runCLI(t, "dkim", "keygen", "--config", cfg); code != 2 || !strings.Contains(stderr, "dkim.domains[1]") {
		t.Fatalf("keygen: exit %d\n%s", code, stderr)
	}
}
