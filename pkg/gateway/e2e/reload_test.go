package e2e

import (
	"crypto/tls"
	"net/smtp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeReloadsPolicyOnHangup (systemctl reload): after SIGHUP the
// next message is decided by the edited [[policy.rules]], a connection
// opened before the reload still works, and a broken edit changes
// nothing (the log names the key), so a typo cannot take the policy away.
func TestServeReloadsPolicyOnHangup(t *testing.T) {
	t.Parallel()
	const signOnly = "[[policy.rules]]\nname = \"default\"\nsign = \"always\"\nencrypt = \"none\"\n"
	g := newGatewayRules(t, signOnly, "")
	g.start()
	defer g.stopServe()
	msg := func(subject string) []byte {
		return []byte("From: alice@example.org\r\nTo: partner@partner.test\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@example.org>\r\n\r\nbody\r\n")
	}
	if r := submit(t, g.addr, submission{From: "alice@example.org", To: []string{"partner@partner.test"}, Data: msg("before")}); !r.is(250, "") {
		t.Fatalf("before the reload: %s", r)
	}
	if f := g.waitDelivered(t, "partner@partner.test"); !strings.Contains(string(f.Msg), "multipart/signed") {
		t.Fatalf("before the reload: want a signed message, got\n%.400s", f.Msg)
	}

	// A connection opened before the reload.
	c, err := smtp.Dial(g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}

	g.editConfig(`encrypt = "none"`, `encrypt = "smime-required"`+"\non_failure = \"hold\"")
	hangup := func(want string) {
		t.Helper()
		from := len(g.logText())
		if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 30*time.Second, func() bool { return strings.Contains(g.logText()[from:], want) },
			func() string { return "no " + want + " in the log:\n" + tail(g.logText()[from:], 10) })
	}
	hangup("SIGHUP: policy and users reloaded")

	if err := c.Mail("alice@example.org"); err != nil {
		t.Fatalf("the connection opened before the reload: %v", err)
	}
	if err := c.Rcpt("other@partner.test"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(strings.ReplaceAll(string(msg("after")), "partner@partner.test", "other@partner.test")))
	if err := w.Close(); err != nil {
		t.Fatalf("end of data after the reload: %v", err)
	}
	if o := g.waitOutcome(t, "other@partner.test"); o.Entry == nil || o.Entry.State != "held" {
		t.Fatalf("after the reload (smime-required, no certificate): %s, want held", o)
	}

	// A broken edit: the running policy stays and the log says why.
	g.editConfig(`on_failure = "hold"`, `on_failure = "drop"`)
	hangup("SIGHUP: not reloaded")
	if !strings.Contains(g.logText(), "on_failure") {
		t.Fatalf("the refusal does not name the key:\n%s", tail(g.logText(), 5))
	}
	// The file is mended for the queue commands below (they read it too);
	// serve is not told, so it still runs the policy it had.
	g.editConfig(`on_failure = "drop"`, `on_failure = "hold"`)
	if r := submit(t, g.addr, submission{From: "alice@example.org", To: []string{"third@partner.test"}, Data: msg("broken")}); !r.is(250, "") {
		t.Fatalf("after a broken reload: %s", r)
	}
	if o := g.waitOutcome(t, "third@partner.test"); o.Entry == nil || o.Entry.State != "held" {
		t.Fatalf("after a broken reload: %s, want held (the last good policy)", o)
	}
}

// TestServeReloadsUsersOnHangup: SIGHUP also re-reads [users]: a sender
// added to a group in [[users.static]] is decided by the sender_group rule
// from the next message on, without a restart; an edit that changes what
// only a restart can (smtp.listen) is named in the log, not half-applied.
func TestServeReloadsUsersOnHangup(t *testing.T) {
	t.Parallel()
	const rules = "[[policy.rules]]\nname = \"legal\"\nsender_group = [\"legal\"]\nsign = \"always\"\nencrypt = \"smime-required\"\non_failure = \"hold\"\n\n" +
		"[[policy.rules]]\nname = \"default\"\nsign = \"always\"\nencrypt = \"none\"\n"
	g := newGatewayRules(t, rules, "")
	g.start()
	defer g.stopServe()
	msg := func(to, subject string) []byte {
		return []byte("From: alice@example.org\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@example.org>\r\n\r\nbody\r\n")
	}
	if r := submit(t, g.addr, submission{From: "alice@example.org", To: []string{"one@partner.test"}, Data: msg("one@partner.test", "before")}); !r.is(250, "") {
		t.Fatalf("before the reload: %s", r)
	}
	if f := g.waitDelivered(t, "one@partner.test"); !strings.Contains(string(f.Msg), "multipart/signed") {
		t.Fatalf("before the reload (alice not in legal): want signed, got\n%.400s", f.Msg)
	}

	g.editConfig(`name = "Alice Example"
groups = ["smime-users"]`, `name = "Alice Example"
groups = ["smime-users", "legal"]`)
	g.editConfig("[smtp]\nlisten = \"127.0.0.1:0\"", "[smtp]\nlisten = \"127.0.0.1:2\"")
	from := len(g.logText())
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, func() bool { return strings.Contains(g.logText()[from:], "SIGHUP: policy and users reloaded") },
		func() string { return "no reload in the log:\n" + tail(g.logText()[from:], 10) })

	if !strings.Contains(g.logText()[from:], "only after a restart") || !strings.Contains(g.logText()[from:], "smtp.listen") {
		t.Errorf("the changed smtp.listen is not named as needing a restart:\n%s", tail(g.logText()[from:], 10))
	}
	if r := submit(t, g.addr, submission{From: "alice@example.org", To: []string{"two@partner.test"}, Data: msg("two@partner.test", "after")}); !r.is(250, "") {
		t.Fatalf("after the reload: %s", r)
	}
	if o := g.waitOutcome(t, "two@partner.test"); o.Entry == nil || o.Entry.State != "held" {
		t.Fatalf("after the reload (alice in legal: smime-required, no certificate): %s, want held", o)
	}
}
