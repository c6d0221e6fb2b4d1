package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealgate/sealgate/pkg/config"
)

func TestConfigCheck(t *testing.T) {
	const example = "../../config.example.toml"
	const mistakes = "../../pkg/config/testdata/three-mistakes.toml"
	missing := filepath.Join(t.TempDir(), "absent.toml")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{name: "example is valid", args: []string{"config", "check", "--config", example},
			wantCode: 0, wantStdout: []string{"config OK: " + example}},
		{name: "three mistakes, all with lines", args: []string{"config", "check", "--config", mistakes},
			wantCode: 2, wantStderr: []string{
				"3 problem(s)",
				mistakes + ":6: smtp.colour: unknown key",
				mistakes + `:9: relay.smarthost: is required when relay.mode is "smarthost"`,
				mistakes + `:12: pki.validity: "8760" is not a duration`,
			}},
		{name: "missing file", args: []string{"config", "check", "--config", missing},
			wantCode: 2, wantStderr: []string{missing + ": config file " + missing + " does not exist", "--config"}},
		{name: "extra argument is a usage error", args: []string{"config", "check", "extra", "--config", example},
			wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout %q lacks %q", stdout, w)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
}

func TestConfigCheckJSON(t *testing.T) {
	type result struct {
		OK       bool   `json:"ok"`
		Path     string `json:"path"`
		Problems []struct {
			Key     string `json:"key"`
			Line    int    `json:"line"`
			Message string `json:"message"`
			Hint    string `json:"hint"`
		} `json:"problems"`
	}
	decode := func(t *testing.T, s string) result {
		t.Helper()
		var r result
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, s)
		}
		return r
	}

	code, stdout, _ := runCLI(t, "config", "check", "--config", "../../config.example.toml", "--output", "json")
	if r := decode(t, stdout); code != 0 || !r.OK || r.Path != "../../config.example.toml" || len(r.Problems) != 0 {
		t.Errorf("valid: exit %d, %+v", code, r)
	}

	code, stdout, _ = runCLI(t, "config", "check", "--config", "../../pkg/config/testdata/three-mistakes.toml", "-o", "json")
	r := decode(t, stdout)
	var got []string
	for _, p := range r.Problems {
		if p.Message == "" || p.Hint == "" {
			t.Errorf("problem without message or hint: %+v", p)
		}
		got = append(got, fmt.Sprintf("%s:%d", p.Key, p.Line))
	}
	if code != 2 || r.OK || strings.Join(got, " ") != "smtp.colour:6 relay.smarthost:9 pki.validity:12" {
		t.Errorf("three mistakes: exit %d, problems %v", code, got)
	}

	code, stdout, _ = runCLI(t, "config", "check", "--config", filepath.Join(t.TempDir(), "x.toml"), "-o", "json")
	if r := decode(t, stdout); code != 2 || r.OK || len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Message, "does not exist") {
		t.Errorf("missing: exit %d, %+v", code, r)
	}
}

// Commands that need the config get every problem as one usage error.
func TestLoadConfigIsUsageError(t *testing.T) {
	a := &app{configPath: "../../pkg/config/testdata/three-mistakes.toml"}
	_, err := a.loadConfig()
	var ue *usageError
	if err == nil || !errors.As(err, &ue) || strings.Count(err.Error(), "three-mistakes.toml:") != 3 {
		t.Fatalf("err = %v", err)
	}
	a.configPath = filepath.Join(t.TempDir(), "absent.toml")
	if _, err := a.loadConfig(); err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing: err = %v", err)
	}
	a.configPath = "../../config.example.toml"
	if cfg, err := a.loadConfig(); err != nil || cfg.Relay.Mode != "dir" {
		t.Fatalf("example: %v", err)
	}
}

// Checks registered by other command groups are reported by `config check`
// like Load's own problems.
func TestConfigCheckRunsRegisteredChecks(t *testing.T) {
	saved := configChecks
	t.Cleanup(func() { configChecks = saved })
	configChecks = append(configChecks, func(cfg *config.Config) []config.Problem {
		return []config.Problem{{Key: "policy.rules[2]", Line: cfg.Line("policy.rules[2]"), Message: "rule is never reached", Hint: "move it up"}}
	})
	example, err := config.Load("../../config.example.toml")
	if err != nil || example.Line("policy.rules[2]") == 0 {
		t.Fatalf("example: %v", err)
	}
	want := fmt.Sprintf("config.example.toml:%d: policy.rules[2]: rule is never reached (move it up)", example.Line("policy.rules[2]"))
	code, _, stderr := runCLI(t, "config", "check", "--config", "../../config.example.toml")
	if code != 2 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	a := &app{configPath: "../../config.example.toml"}
	if _, err := a.loadConfig(); err == nil || !strings.Contains(err.Error(), "never reached") {
		t.Fatalf("loadConfig: %v", err)
	}
}

// relay.mode = "mx" is accepted; config check names the resolver whose AD
// bit DANE will trust, and warns when it is not on this host (from the
// file, or from resolv.conf when relay.resolver is empty).
func TestConfigCheckRelayModeMX(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 192.0.2.53\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := resolvConf
	resolvConf = conf
	t.Cleanup(func() { resolvConf = old })
	for _, tc := range []struct {
		name, resolver string
		stdout, warn   string // "" warn: no warning
	}{
		{"loopback", "127.0.0.1:5353", "DNS through 127.0.0.1:5353", ""},
		{"remote", "198.51.100.7:53", "DNS through 198.51.100.7:53", "warning: 4: relay.resolver: resolver 198.51.100.7:53 is not on this host"},
		{"from resolv.conf", "", "DNS through 192.0.2.53:53", "resolver 192.0.2.53:53 is not on this host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "sealgate.toml")
			body := "data_dir = \"./data\"\n[relay]\nmode = \"mx\"\n"
			if tc.resolver != "" {
				body += fmt.Sprintf("resolver = %q\n", tc.resolver)
			}
			if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCLI(t, "config", "check", "--config", file)
			if code != 0 || !strings.Contains(stdout, tc.stdout) {
				t.Fatalf("exit %d, stdout %s, stderr %s", code, stdout, stderr)
			}
			if (tc.warn == "") != !strings.Contains(stderr, "warning") || (tc.warn != "" && !strings.Contains(stderr, tc.warn)) {
				t.Fatalf("stderr %q, want warning %q", stderr, tc.warn)
			}
		})
	}
}

// `config check` reads smtp.auth_users_file as serve does: a line without a
// role for a name that is not an address is reported with the file's line.
func TestConfigCheckAuthUsersFile(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("data_dir = %q\n[relay]\nmode = \"dir\"\ndir = \"./outbox\"\n[smtp]\nauth_users_file = %q\n", filepath.Join(dir, "data"), users)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, content string
		code          int
		want          string
	}{
		{"connector without role", "exchange:" + string(hash) + "\n", 2, "line 1"},
		{"connector with role", "exchange:" + string(hash) + ":relay\n", 0, ""},
		{"unknown role", "alice@example.org:" + string(hash) + ":admin\n", 2, "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(users, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCLI(t, "config", "check", "--config", cfgFile)
			if code != tc.code || !strings.Contains(stderr, tc.want) || (tc.code != 0 && !strings.Contains(stderr, "smtp.auth_users_file")) {
				t.Fatalf("exit %d, stderr %s", code, stderr)
			}
			if strings.Contains(stderr, string(hash)) {
				t.Fatalf("the hash is in the output: %s", stderr)
			}
		})
	}
}
