package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The portal's keys: required companions, URL form, its own listener, and
// the deprecated pdf.portal_url read with a warning that names portal.url.
func TestPortalProblems(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		want     []keyLine
		wantHint string
	}{
		{name: "portal mode needs portal.url", doc: dirRelay + "[pdf]\npassword = [\"portal\"]\n",
			want: []keyLine{{"portal.url", 5}}, wantHint: "[portal]"},
		{name: "url must be http(s) without query", doc: dirRelay + "[portal]\nurl = \"https://x.example/?a=b\"\n",
			want: []keyLine{{"portal.url", 5}}},
		{name: "url not a URL", doc: dirRelay + "[portal]\nurl = \"secure.example.org\"\n",
			want: []keyLine{{"portal.url", 5}}},
		{name: "portal on the internal listener", doc: dirRelay + "[http]\nlisten = \"127.0.0.1:9000\"\n[pdf]\npassword = [\"portal\"]\n[portal]\nurl = \"https://p.example\"\nlisten = \"127.0.0.1:9000\"\n",
			want: []keyLine{{"portal.listen", 10}}, wantHint: "its own address"},
		{name: "bad listen", doc: dirRelay + "[pdf]\npassword = [\"portal\"]\n[portal]\nurl = \"https://p.example\"\nlisten = \"nowhere\"\n",
			want: []keyLine{{"portal.listen", 8}}},
		{name: "cert without key", doc: dirRelay + "[portal]\ntls_cert_file = \"c.pem\"\n",
			want: []keyLine{{"portal.tls_key_file", 5}, {"portal.tls_cert_file", 5}}},
		{name: "old and new url differ", doc: dirRelay + "[pdf]\nportal_url = \"https://a.example\"\n[portal]\nurl = \"https://b.example\"\n",
			want: []keyLine{{"pdf.portal_url", 5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := problemsOf(t, write(t, tc.doc, nil))
			wantProblems(t, ps, tc.want, tc.wantHint)
		})
	}
}

func TestPortalURLDeprecatedAlias(t *testing.T) {
	cfg, ps := problemsOf(t, write(t, dirRelay+"[pdf]\npassword = [\"portal\"]\nportal_url = \"https://old.example\"\n", nil))
	if len(ps) > 0 {
		t.Fatalf("the old key must still work: %+v", ps)
	}
	if cfg.Portal.URL != "https://old.example" {
		t.Errorf("portal.url = %q, want the old key's value", cfg.Portal.URL)
	}
	w := cfg.Warnings()
	if len(w) != 1 || w[0].Key != "pdf.portal_url" || w[0].Line != 6 || !strings.Contains(w[0].Hint, "[portal]") || !strings.Contains(w[0].Message, "portal.url") {
		t.Errorf("warnings %+v, want one for pdf.portal_url at line 6 naming portal.url", w)
	}
	cfg, _ = problemsOf(t, write(t, dirRelay+"[pdf]\npassword = [\"portal\"]\n[portal]\nurl = \"https://new.example\"\n", nil))
	if len(cfg.Warnings()) != 0 {
		t.Errorf("no warning expected: %+v", cfg.Warnings())
	}
}

// TestDSNPasswordWarning: a password in store.dsn is warned about with the
// key and line, never repeated; dsn_file and a password-less DSN are not.
func TestDSNPasswordWarning(t *testing.T) {
	for _, tc := range []struct {
		dsn  string
		warn bool
	}{
		{"postgres://sealgate:S3cret-DSN-pw@db.example.org/sealgate", true},
		{"postgres://sealgate@db.example.org/sealgate?password=S3cret-DSN-pw", true},
		{"host=db user=sealgate password=S3cret-DSN-pw dbname=sealgate", true},
		{"postgres://sealgate@db.example.org/sealgate?sslmode=verify-full", false},
		{"host=db user=sealgate dbname=sealgate", false},
	} {
		dir := t.TempDir()
		p := filepath.Join(dir, "sealgate.toml")
		doc := "[relay]\nmode = \"dir\"\ndir = \"./out\"\n[store]\ndriver = \"postgres\"\ndsn = \"" + tc.dsn + "\"\n"
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(p)
		if err != nil {
			t.Fatalf("%s: %v", tc.dsn, err)
		}
		w := cfg.Warnings()
		if got := len(w) == 1 && w[0].Key == "store.dsn" && w[0].Line == 6; got != tc.warn {
			t.Errorf("%s: warnings %+v, want warned=%v", tc.dsn, w, tc.warn)
		}
		for _, x := range w {
			if strings.Contains(x.Message+x.Hint, "S3cret-DSN-pw") {
				t.Errorf("the warning repeats the password: %+v", x)
			}
		}
	}
}
