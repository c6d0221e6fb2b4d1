package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// inboundAddr is the inbound listener's address in serve's "listening"
// line, or "".
func inboundAddr(log string) string {
	for _, line := range strings.Split(log, "\n") {
		var rec struct{ Msg, Inbound string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
			return rec.Inbound
		}
	}
	return ""
}

// certPEM cuts the PEM certificate out of `cert issue|renew|show` output.
func certPEM(t *testing.T, out []byte) []byte {
	t.Helper()
	s := string(out)
	i := strings.Index(s, "-----BEGIN CERTIFICATE-----")
	if i < 0 {
		t.Fatalf("no certificate in:\n%s", s)
	}
	return []byte(s[i:])
}

// A partner's signed and encrypted mail reaches the user readable through
// the real serve binary: inbound listener (swaks) → spool → decrypt and
// verify → SMTP next hop (a sink). Encrypted to the user's earlier
// certificate; an envelope for someone else arrives as it came; the
// partner's certificate is harvested and `directory lookup` shows it.
func TestServeInboundEndToEnd(t *testing.T) {
	for _, p := range []string{"openssl", "swaks"} {
		testpeer.Require(t, p)
	}
	partners := testpeer.NewPKI(t)
	carol := partners.Issue(t, "carol@partner.test", testpeer.IssueOptions{})
	sink := testpeer.StartSink(t, testpeer.SinkOptions{})
	g := newGateway(t, fmt.Sprintf("\n[trust]\nca_files = [%q, %q]\nsystem_roots = false\n\n[inbound]\nlisten = \"127.0.0.1:0\"\nnext_hop = %q\nsubject_marker_undecryptable = \"[not decrypted]\"\n",
		partners.RootFile, partners.InterFile, sink.Addr))
	dir := t.TempDir()
	g.cli("pki", "init")
	old := filepath.Join(dir, "alice-old.pem")
	if err := os.WriteFile(old, certPEM(t, g.cli("cert", "issue", "alice@example.org")), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cli("cert", "renew", "alice@example.org")
	g.start()
	addr := ""
	waitUntil(t, 30*time.Second, func() bool { addr = inboundAddr(g.logText()); return addr != "" },
		func() string { return "no inbound address in the listening line:\n" + tail(g.logText(), 20) })

	entity := filepath.Join(dir, "entity")
	os.WriteFile(entity, []byte("Content-Type: text/plain\r\n\r\nThe signed contract, for Alice.\r\n"), 0o600)
	signed := filepath.Join(dir, "signed.eml")
	testpeer.MustRun(t, nil, "openssl", "cms", "-sign", "-in", entity, "-out", signed, "-signer", carol.CertFile,
		"-inkey", carol.KeyFile, "-certfile", partners.ChainFile, "-md", "sha256")
	encrypt := func(name, recip string, opts ...string) string {
		out := filepath.Join(dir, name)
		// Options after -recip apply to that recipient (-keyopt).
		args := append([]string{"cms", "-encrypt", "-in", signed, "-out", out, "-from", "carol@partner.test",
			"-to", "alice@example.org", "-subject", "Contract " + name, "-recip", recip}, opts...)
		testpeer.MustRun(t, nil, "openssl", args...)
		return out
	}
	readable := encrypt("gcm", old, "-aes-256-gcm")
	foreign := encrypt("foreign", carol.CertFile, "-aes256")
	// The key transports a partner's openssl uses: PKCS#1 v1.5 (default)
	// and RSAES-OAEP, to Alice's current certificate this time.
	current := filepath.Join(dir, "alice-current.pem")
	if err := os.WriteFile(current, certPEM(t, g.cli("cert", "show", "alice@example.org")), 0o600); err != nil {
		t.Fatal(err)
	}
	v15 := encrypt("v15", current, "-aes256")
	oaep := encrypt("oaep", current, "-aes256", "-keyopt", "rsa_padding_mode:oaep")
	for _, f := range []string{readable, foreign, v15, oaep} {
		testpeer.MustRun(t, nil, "swaks", "--server", addr, "--from", "carol@partner.test", "--to", "alice@example.org",
			"--data", "@"+f, "--hide-all")
	}
	msgs := sink.WaitMessages(t, 4, 30*time.Second)
	bySubject := map[string]string{}
	for _, m := range msgs {
		s := string(m.Data)
		for _, k := range []string{"Contract gcm", "Contract foreign", "Contract v15", "Contract oaep"} {
			if strings.Contains(s, k) {
				bySubject[k] = s
			}
		}
	}
	t.Run("decrypted with the earlier key, signature passes", func(t *testing.T) {
		m := bySubject["Contract gcm"]
		if !strings.Contains(m, "The signed contract, for Alice.") || !strings.Contains(m, "smime=pass") ||
			strings.Contains(m, "application/pkcs7-mime") {
			t.Fatalf("not readable or not passed:\n%s", m)
		}
	})
	for _, k := range []string{"Contract v15", "Contract oaep"} {
		t.Run(k+" decrypted with the current key", func(t *testing.T) {
			m := bySubject[k]
			if !strings.Contains(m, "The signed contract, for Alice.") || !strings.Contains(m, "smime=pass") ||
				strings.Contains(m, "application/pkcs7-mime") {
				t.Fatalf("not readable or not passed:\n%s", m)
			}
		})
	}
	t.Run("undecryptable arrives as it came with the reason", func(t *testing.T) {
		m := bySubject["Contract foreign"]
		orig, _ := os.ReadFile(foreign)
		body := string(orig[strings.Index(string(orig), "\n\n")+2:])
		if !strings.Contains(m, "smime=permerror") || !strings.Contains(m, "[not decrypted] Contract foreign") ||
			!strings.Contains(strings.ReplaceAll(m, "\r\n", "\n"), strings.ReplaceAll(body, "\r\n", "\n")) {
			t.Fatalf("want the original envelope with the reason:\n%s", m)
		}
	})
	t.Run("queue delete removes an inbound message from its own spool", func(t *testing.T) {
		sink.Fail(451, "try later")
		defer sink.Fail(0, "")
		testpeer.MustRun(t, nil, "swaks", "--server", addr, "--from", "carol@partner.test", "--to", "alice@example.org",
			"--data", "@"+readable, "--hide-all")
		var id string
		waitUntil(t, 30*time.Second, func() bool {
			var list []struct{ ID, State string }
			if json.Unmarshal(g.cli("queue", "list", "-o", "json"), &list) == nil {
				for _, e := range list {
					if e.State == "deferred" {
						id = e.ID
					}
				}
			}
			return id != ""
		}, func() string { return "no deferred inbound message:\n" + tail(g.logText(), 20) })
		spooled := func() int {
			files, _ := filepath.Glob(filepath.Join(g.dir, "data", "spool-inbound", "*"))
			n := 0
			for _, f := range files {
				if strings.Contains(filepath.Base(f), id) {
					n++
				}
			}
			return n
		}
		if spooled() == 0 {
			t.Fatalf("message %s not in spool-inbound", id)
		}
		g.cli("queue", "delete", id)
		if n := spooled(); n != 0 {
			t.Fatalf("%d spool files of %s left in spool-inbound after queue delete", n, id)
		}
	})
	t.Run("no open relay: other domains are refused at RCPT", func(t *testing.T) {
		r := testpeer.Run(t, nil, "swaks", "--server", addr, "--from", "carol@partner.test", "--to", "victim@elsewhere.test",
			"--data", "@"+readable)
		if r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "550 5.7.1") {
			t.Fatalf("swaks exit %d, want the RCPT refused with 550 5.7.1:\n%s", r.ExitCode, r.Stdout)
		}
		if strings.Contains(string(g.cli("queue", "list")), "victim@elsewhere.test") {
			t.Fatal("the refused recipient was queued")
		}
	})
	t.Run("the signer is harvested", func(t *testing.T) {
		out := string(g.cli("directory", "lookup", "carol@partner.test"))
		// Only a harvested signature carries the announced capabilities
		// (an imported certificate has none).
		if !strings.Contains(out, "found in store (harvested)") || !strings.Contains(out, "announces  aes256-CBC") {
			t.Fatalf("lookup does not show the harvested certificate:\n%s", out)
		}
	})
}
