package config

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func whsec(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// TestWebhookProblems: every way an admin can get [[webhooks]] wrong is
// reported with its key, line and a hint, and the secret never shows.
func TestWebhookProblems(t *testing.T) {
	good := whsec(t, 32)
	hook := func(lines ...string) string {
		return dirRelay + "[[webhooks]]\n" + strings.Join(lines, "\n") + "\n"
	}
	okLines := []string{`name = "siem"`, `url = "https://siem.example.org/hook"`, `secret_file = "hook.secret"`}
	with := func(replace map[string]string, extra ...string) []string {
		var out []string
		for _, l := range okLines {
			k, _, _ := strings.Cut(l, " =")
			if r, ok := replace[k]; ok {
				if r != "" {
					out = append(out, r)
				}
				continue
			}
			out = append(out, l)
		}
		return append(out, extra...)
	}
	secretFile := map[string]string{"hook.secret": good + "\n"}
	tests := []struct {
		name     string
		doc      string
		files    map[string]string
		mode     os.FileMode // of hook.secret; 0: 0600
		want     []keyLine
		wantMsg  string
		wantHint string
	}{
		{name: "valid", doc: hook(with(nil, `events = ["delivered", "held", "bounced"]`, `timeout = "30s"`, `max_backoff = "1h"`)...), files: secretFile},
		{name: "valid loopback http", doc: hook(with(map[string]string{"url": `url = "http://127.0.0.1:9000/hook"`})...), files: secretFile},
		{name: "valid localhost and ::1", doc: hook(with(map[string]string{"url": `url = "http://[::1]:9000/hook"`})...) +
			"[[webhooks]]\nname = \"local\"\nurl = \"http://localhost/x\"\nsecret_file = \"hook.secret\"\n", files: secretFile},
		{name: "group-readable secret is fine", doc: hook(okLines...), files: secretFile, mode: 0o640},
		{name: "two secrets for rotation", doc: hook(okLines...), files: map[string]string{"hook.secret": good + "\n\n" + whsec(t, 24) + "\n"}},
		{name: "plain http across the network", doc: hook(with(map[string]string{"url": `url = "http://siem.example.org/hook"`})...), files: secretFile,
			want: []keyLine{{"webhooks[0].url", 6}}, wantMsg: "anyone on the path", wantHint: "loopback"},
		{name: "http to a private address is not loopback", doc: hook(with(map[string]string{"url": `url = "http://10.0.0.7/hook"`})...), files: secretFile,
			want: []keyLine{{"webhooks[0].url", 6}}},
		{name: "credentials in the url", doc: hook(with(map[string]string{"url": `url = "https://soc:hunter2@siem.example.org/hook"`})...), files: secretFile,
			want: []keyLine{{"webhooks[0].url", 6}}, wantMsg: "user name or password"},
		{name: "other scheme", doc: hook(with(map[string]string{"url": `url = "ftp://siem.example.org/hook"`})...), files: secretFile,
			want: []keyLine{{"webhooks[0].url", 6}}, wantMsg: "not https"},
		{name: "relative url", doc: hook(with(map[string]string{"url": `url = "/hook"`})...), files: secretFile,
			want: []keyLine{{"webhooks[0].url", 6}}},
		{name: "missing everything", doc: dirRelay + "[[webhooks]]\nevents = [\"delivered\"]\n",
			want: []keyLine{{"webhooks[0].name", 4}, {"webhooks[0].url", 4}, {"webhooks[0].secret_file", 4}}},
		{name: "bad name", doc: hook(with(map[string]string{"name": `name = "SIEM hook"`})...), files: secretFile,
			want: []keyLine{{"webhooks[0].name", 5}}},
		{name: "duplicate name", doc: hook(okLines...) + "[[webhooks]]\n" + strings.Join(okLines, "\n") + "\n", files: secretFile,
			want: []keyLine{{"webhooks[1].name", 9}}, wantMsg: "already the name of webhooks[0]"},
		{name: "unknown event", doc: hook(with(nil, `events = ["delivered", "opened"]`)...), files: secretFile,
			want: []keyLine{{"webhooks[0].events[1]", 8}}, wantMsg: `"opened" is not an event`, wantHint: "bounced"},
		{name: "event twice", doc: hook(with(nil, `events = ["held", "held"]`)...), files: secretFile,
			want: []keyLine{{"webhooks[0].events[1]", 8}}},
		{name: "secret file missing", doc: hook(okLines...),
			want: []keyLine{{"webhooks[0].secret_file", 7}}, wantMsg: "does not exist"},
		{name: "secret file readable by everyone", doc: hook(okLines...), files: secretFile, mode: 0o644,
			want: []keyLine{{"webhooks[0].secret_file", 7}}, wantMsg: "accessible to every user", wantHint: "chmod o="},
		{name: "secret without prefix", doc: hook(okLines...), files: map[string]string{"hook.secret": strings.TrimPrefix(good, "whsec_")},
			want: []keyLine{{"webhooks[0].secret_file", 7}}, wantMsg: "line 1 does not start with \"whsec_\""},
		{name: "secret not base64", doc: hook(okLines...), files: map[string]string{"hook.secret": "whsec_not*base64!"},
			want: []keyLine{{"webhooks[0].secret_file", 7}}, wantMsg: "not standard base64"},
		{name: "secret too short", doc: hook(okLines...), files: map[string]string{"hook.secret": whsec(t, 16)},
			want: []keyLine{{"webhooks[0].secret_file", 7}}, wantMsg: "16 bytes, want 24 to 64"},
		{name: "secret too long", doc: hook(okLines...), files: map[string]string{"hook.secret": whsec(t, 65)},
			want: []keyLine{{"webhooks[0].secret_file", 7}}, wantMsg: "65 bytes"},
		{name: "empty secret file", doc: hook(okLines...), files: map[string]string{"hook.secret": "\n\n"},
			want: []keyLine{{"webhooks[0].secret_file", 7}}, wantMsg: "no secret"},
		{name: "secret inline in the config", doc: hook(with(nil, `secret = "`+good+`"`)...), files: secretFile,
			want: []keyLine{{"webhooks[0].secret", 8}}, wantHint: "secret_file"},
		{name: "timeout out of range", doc: hook(with(nil, `timeout = "10m"`, `max_backoff = "0s"`)...), files: secretFile,
			want: []keyLine{{"webhooks[0].timeout", 8}, {"webhooks[0].max_backoff", 9}}},
		{name: "single table instead of array", doc: dirRelay + "[webhooks]\nname = \"x\"\n",
			want: []keyLine{{"webhooks", 4}}, wantHint: "[[webhooks]]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, tt.doc, tt.files)
			if tt.mode != 0 {
				if err := os.Chmod(filepath.Join(filepath.Dir(path), "hook.secret"), tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			_, ps := problemsOf(t, path)
			if got := keyLinesOf(ps); !equalKeyLines(got, tt.want) {
				t.Fatalf("problems %v, want %v\n%v", got, tt.want, ps)
			}
			for _, p := range ps {
				if strings.Contains(p.String(), strings.TrimPrefix(good, "whsec_")) || strings.Contains(p.String(), "hunter2") {
					t.Fatalf("a secret in the problem: %s", p)
				}
			}
			if len(ps) == 0 {
				return
			}
			if !strings.Contains(ps[0].Message, tt.wantMsg) {
				t.Errorf("message %q, want %q", ps[0].Message, tt.wantMsg)
			}
			if !strings.Contains(ps[0].Hint, tt.wantHint) {
				t.Errorf("hint %q, want %q", ps[0].Hint, tt.wantHint)
			}
		})
	}
}

func equalKeyLines(a, b []keyLine) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestWebhookDefaults: events empty means all; timeout and backoff cap
// come from the defaults when absent; secrets parse into their bytes.
func TestWebhookDefaults(t *testing.T) {
	secret := whsec(t, 32)
	path := write(t, dirRelay+"[[webhooks]]\nname = \"siem\"\nurl = \"https://siem.example.org/h\"\nsecret_file = \"s\"\n",
		map[string]string{"s": "  " + secret + "  \r\n"})
	cfg, ps := problemsOf(t, path)
	if ps != nil {
		t.Fatal(ps)
	}
	w := cfg.Webhooks[0]
	if len(w.Events) != 0 || w.Timeout.Duration != 15*time.Second || w.MaxBackoff.Duration != 5*time.Minute {
		t.Fatalf("defaults: %+v", w)
	}
	keys, err := ReadWebhookSecrets(cfg.Path(w.SecretFile))
	want, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(keys) != 1 || string(keys[0]) != string(want) {
		t.Fatalf("secrets %x (%v), want %x", keys, err, want)
	}
}

// FuzzParseWebhookSecrets: whatever the file holds, parsing never panics,
// accepts only keys of the allowed size, and never echoes the content.
func FuzzParseWebhookSecrets(f *testing.F) {
	f.Add([]byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"))
	f.Add([]byte("whsec_\nwhsec_===\n"))
	f.Add([]byte("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY\r\nwhsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseWebhookSecrets(data)
		if err != nil {
			if len(data) > 12 && strings.Contains(err.Error(), string(data)) {
				t.Fatalf("the error quotes the content: %v", err)
			}
			return
		}
		if len(keys) == 0 || len(keys) > maxWebhookSecrets {
			t.Fatalf("%d keys", len(keys))
		}
		for _, k := range keys {
			if len(k) < MinWebhookSecretLen || len(k) > MaxWebhookSecretLen {
				t.Fatalf("key of %d bytes", len(k))
			}
		}
	})
}
