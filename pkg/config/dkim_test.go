package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDKIMProblems(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		files    map[string]string
		mode     os.FileMode // of key.pem, when files has it
		want     []keyLine
		wantHint string
	}{
		{name: "off by default", doc: dirRelay},
		{name: "signing", doc: dirRelay + "[dkim]\nselector = \"s1\"\ndomains = [\"example.org\", \"mail.example.org\"]\nkey_file = \"key.pem\"\n",
			files: map[string]string{"key.pem": "x"}, mode: 0o600},
		{name: "key file absent is left to the key check", doc: dirRelay + "[dkim]\ndomains = [\"example.org\"]\n"},
		{name: "bad selector", doc: dirRelay + "[dkim]\nselector = \"a b\"\ndomains = [\"example.org\"]\n",
			want: []keyLine{{"dkim.selector", 5}}, wantHint: "_domainkey"},
		{name: "empty selector", doc: dirRelay + "[dkim]\nselector = \"\"\ndomains = [\"example.org\"]\n",
			want: []keyLine{{"dkim.selector", 5}}},
		{name: "wildcard domain", doc: dirRelay + "[dkim]\ndomains = [\"example.org\", \"*.example.org\"]\n",
			want: []keyLine{{"dkim.domains[1]", 5}}, wantHint: "by name"},
		{name: "not a domain", doc: dirRelay + "[dkim]\ndomains = [\"alice@example.org\"]\n",
			want: []keyLine{{"dkim.domains[0]", 5}}, wantHint: "example.org"},
		{name: "twice", doc: dirRelay + "[dkim]\ndomains = [\"example.org\", \"Example.ORG\"]\n",
			want: []keyLine{{"dkim.domains[1]", 5}}, wantHint: "remove"},
		{name: "key_file without domains", doc: dirRelay + "[dkim]\nkey_file = \"key.pem\"\n",
			want: []keyLine{{"dkim.key_file", 5}}, wantHint: "domains"},
		{name: "key readable by others", doc: dirRelay + "[dkim]\ndomains = [\"example.org\"]\nkey_file = \"key.pem\"\n",
			files: map[string]string{"key.pem": "x"}, mode: 0o644,
			want: []keyLine{{"dkim.key_file", 6}}, wantHint: "chmod 600"},
		{name: "key is a directory", doc: dirRelay + "[dkim]\ndomains = [\"example.org\"]\nkey_file = \"keys\"\n",
			files: map[string]string{"keys/x": "x"},
			want:  []keyLine{{"dkim.key_file", 6}}, wantHint: "key file itself"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.doc, tc.files)
			if tc.mode != 0 {
				if err := os.Chmod(filepath.Join(filepath.Dir(p), "key.pem"), tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			cfg, ps := problemsOf(t, p)
			wantProblems(t, ps, tc.want, tc.wantHint)
			if cfg != nil && strings.Contains(tc.doc, "key.pem") && cfg.DKIMKeyPath() != filepath.Join(filepath.Dir(p), "key.pem") {
				t.Errorf("DKIMKeyPath = %s", cfg.DKIMKeyPath())
			}
		})
	}
}

func TestDKIMKeyPathDefault(t *testing.T) {
	cfg, ps := problemsOf(t, write(t, "data_dir = \"d\"\n"+dirRelay+"[dkim]\ndomains = [\"example.org\"]\n", nil))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if got := cfg.DKIMKeyPath(); filepath.Base(got) != "dkim.key" || filepath.Base(filepath.Dir(got)) != "d" {
		t.Errorf("DKIMKeyPath = %s, want data_dir/dkim.key", got)
	}
	if !cfg.DKIM.Enabled() || cfg.DKIM.Selector != "sealgate" {
		t.Errorf("DKIM = %+v, want enabled with selector sealgate", cfg.DKIM)
	}
}
