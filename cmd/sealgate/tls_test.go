package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// TestTLSCheckCLI runs `sealgate tls check` against real MX hosts (valid,
// self-signed, no STARTTLS) found through a real unbound: the JSON has
// exactly INTERFACE.md's keys, the table names each host, the exit status
// is 0 for a checked domain whatever its verdict, 1 when nothing could be
// probed or the verdict is below --min, 2 for a bad argument.
func TestTLSCheckCLI(t *testing.T) {
	mx := testpeer.StartMXHosts(t,
		testpeer.MXHostSpec{Name: "mx1.good.test", Kind: testpeer.MXValid},
		testpeer.MXHostSpec{Name: "mx2.good.test", Kind: testpeer.MXSelfSigned},
		testpeer.MXHostSpec{Name: "mx.plain.test", Kind: testpeer.MXPlain})
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{LocalData: []string{
		"good.test. MX 10 mx1.good.test.", "good.test. MX 20 mx2.good.test.",
		"mx1.good.test. A " + mx.Hosts["mx1.good.test"].IP, "mx2.good.test. A " + mx.Hosts["mx2.good.test"].IP,
		"only.test. MX 10 mx1.good.test.",
		"plain.test. MX 10 mx.plain.test.", "mx.plain.test. A " + mx.Hosts["mx.plain.test"].IP,
		"dead.test. MX 10 mx.dead.test.", "mx.dead.test. A 127.0.0.9",
	}})
	dir := t.TempDir()
	conf := filepath.Join(dir, "sealgate.toml")
	body := fmt.Sprintf("data_dir = \"data\"\n\n[relay]\nmode = \"dir\"\ndir = \"out\"\nresolver = %q\nmx_port = %d\nca_files = [%q]\ntimeout = \"10s\"\n",
		u.Addr, mx.Port, mx.CAFile)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := pdfRunCLI(nil, "tls", "check", "good.test", "--json", "--config", conf)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	for _, k := range []string{"domain", "mx", "verdict"} {
		if _, ok := doc[k]; !ok {
			t.Fatalf("no %q in %s", k, stdout)
		}
	}
	hosts := doc["mx"].([]any)
	if len(hosts) != 2 || doc["domain"] != "good.test" || doc["verdict"] != "encrypted" {
		t.Fatalf("report: %s", stdout)
	}
	wantHost := []string{"certificate", "cipher", "dane", "host", "mta_sts", "starttls", "tls_version", "verdict"}
	wantCert := []string{"chain_complete", "expired", "name_match", "self_signed", "valid"}
	for i, want := range []struct {
		host, verdict string
		valid, self   bool
	}{{"mx1.good.test", "verified", true, false}, {"mx2.good.test", "encrypted", false, true}} {
		h := hosts[i].(map[string]any)
		for _, k := range wantHost {
			if _, ok := h[k]; !ok {
				t.Fatalf("host %d lacks %q: %v", i, k, h)
			}
		}
		c := h["certificate"].(map[string]any)
		var keys []string
		for k := range c {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != strings.Join(wantCert, ",") {
			t.Fatalf("certificate keys %v, want %v", keys, wantCert)
		}
		if h["host"] != want.host || h["verdict"] != want.verdict || c["valid"] != want.valid || c["self_signed"] != want.self ||
			h["starttls"] != true || h["dane"] != "insecure-dns" {
			t.Fatalf("host %d: %v", i, h)
		}
	}

	// The human table, and the exit statuses.
	cases := []struct {
		args []string
		code int
		out  []string
	}{
		{[]string{"plain.test"}, 0, []string{"plain.test: insecure", "mx.plain.test", "no STARTTLS"}},
		{[]string{"only.test", "--min", "verified"}, 0, []string{"only.test: verified", "mx1.good.test", "valid"}},
		{[]string{"good.test", "--min", "verified"}, 1, []string{"good.test: encrypted", "self-signed"}},
		{[]string{"dead.test"}, 1, []string{"unreachable"}},
		{[]string{"good.test", "--min", "superb"}, 2, nil},
		{[]string{"a@b.test"}, 2, nil},
	}
	for _, c := range cases {
		code, stdout, stderr := pdfRunCLI(nil, append([]string{"tls", "check"}, append(c.args, "--config", conf)...)...)
		if code != c.code {
			t.Fatalf("%v: exit %d, want %d: %s %s", c.args, code, c.code, stdout, stderr)
		}
		for _, w := range c.out {
			if !strings.Contains(stdout, w) {
				t.Fatalf("%v: output lacks %q:\n%s%s", c.args, w, stdout, stderr)
			}
		}
	}
}
