package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The deprecated pdf.portal_url still works; config check says so, with
// line and the new key, and exits 0 (in both output forms).
func TestConfigCheckWarnsAboutPortalURL(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "s.toml")
	doc := "[relay]\nmode = \"dir\"\ndir = \"./out\"\n[pdf]\npassword = [\"portal\"]\nportal_url = \"https://old.example\"\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "config", "check", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "config OK") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if want := cfg + ": warning: 6: pdf.portal_url: is deprecated: portal.url replaces it"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q lacks %q", stderr, want)
	}
	code, stdout, _ = runCLI(t, "config", "check", "--config", cfg, "--output", "json")
	var res configCheckResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || code != 0 || !res.OK || len(res.Warnings) != 1 || res.Warnings[0].Key != "pdf.portal_url" {
		t.Fatalf("json: exit %d %+v %v\n%s", code, res, err, stdout)
	}
}
