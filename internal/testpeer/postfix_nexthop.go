package testpeer

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// PostfixNextHop is a Postfix instance in the smart-host role, the next
// hop sealgate relays to: its smtpd offers STARTTLS with a certificate made
// for the test and, with a user, AUTH (Cyrus SASL, sasldb) only over TLS
// and only authenticated clients may send. Every message is delivered
// into one maildir, with TLS and the authenticated user noted in its
// Received header.
type PostfixNextHop struct {
	*Postfix
	// CAFile is the PEM certificate to trust: the server certificate is
	// self-signed for 127.0.0.1, localhost and DNSName.
	CAFile  string
	DNSName string
	maildir string
}

// PostfixNextHopOptions shape the next hop.
type PostfixNextHopOptions struct {
	// DNSName goes into the certificate besides 127.0.0.1 and localhost
	// (default "smarthost.sealgate.test").
	DNSName string
	// User and Password: AUTH required; empty: anyone may send.
	User, Password string
}

// StartPostfixNextHop starts the next hop (≈2.5 s); it stops when the
// test ends.
func StartPostfixNextHop(t testing.TB, opts PostfixNextHopOptions) *PostfixNextHop {
	t.Helper()
	if opts.DNSName == "" {
		opts.DNSName = "smarthost.sealgate.test"
	}
	if opts.User != "" {
		Require(t, "saslpasswd2")
	}
	h := &PostfixNextHop{DNSName: opts.DNSName}
	h.Postfix = startPostfix(t, opts.DNSName, func(dir string) string {
		uid, gid := postfixIDs(t)
		h.CAFile, _ = WriteServerCert(t, dir, opts.DNSName)
		mail := filepath.Join(dir, "mail")
		h.maildir = filepath.Join(mail, "inbox")
		if err := os.MkdirAll(mail, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(mail, uid, gid); err != nil {
			t.Fatal(err)
		}
		// Without a user, the loopback clients are the mynetworks that may
		// send (Postfix refuses to start smtpd with a bare "permit").
		networks := ""
		if opts.User == "" {
			networks = "127.0.0.0/8"
		}
		cf := fmt.Sprintf(`mydestination =
mynetworks = `+networks+`
smtpd_tls_cert_file = %[1]s/tls.pem
smtpd_tls_key_file = %[1]s/tls.key
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_relay_restrictions =
virtual_mailbox_domains = static:all
virtual_mailbox_base = %[2]s
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:%[3]d
virtual_gid_maps = static:%[4]d
virtual_minimum_uid = 1
`, dir, mail, uid, gid)
		if opts.User == "" {
			return cf + "smtpd_recipient_restrictions = permit_mynetworks, reject\n"
		}
		// Postfix asks Cyrus for the user in realm myhostname; smtpd
		// reads smtpd.conf and the sasldb as mail_owner (unreadable, Cyrus
		// silently falls back to /etc/sasldb2).
		sasldb := filepath.Join(dir, "sasldb2")
		// smtpd.conf in a directory of its own: Cyrus did not read it
		// from the instance directory itself (seen with Postfix 3.7).
		saslDir := filepath.Join(dir, "sasl")
		if err := os.Mkdir(saslDir, 0o755); err != nil {
			t.Fatal(err)
		}
		saslConf := writeFile(t, saslDir, "smtpd.conf", fmt.Sprintf("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: %s\nmech_list: PLAIN LOGIN\n", sasldb))
		MustRun(t, []byte(opts.Password), "saslpasswd2", "-f", sasldb, "-c", "-p", "-u", opts.DNSName, opts.User)
		for _, f := range []string{saslConf, sasldb} {
			if err := os.Chown(f, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		return cf + fmt.Sprintf(`smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = %s
smtpd_sasl_local_domain = $myhostname
smtpd_sasl_authenticated_header = yes
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
`, saslDir)
	})
	return h
}

// postfixIDs are the uid and gid of the postfix user, who owns what the
// daemons write.
func postfixIDs(t testing.TB) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("testpeer: %v (is Postfix installed?)", err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err == nil {
		gid, err = strconv.Atoi(u.Gid)
	}
	if err != nil {
		t.Fatalf("testpeer: postfix user %s/%s: %v", u.Uid, u.Gid, err)
	}
	return uid, gid
}

// Messages returns the messages delivered so far, oldest first (maildir
// names start with the delivery time).
func (h *PostfixNextHop) Messages(t testing.TB) [][]byte {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(h.maildir, "new"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	msgs := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(h.maildir, "new", n))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	return msgs
}

// WaitMessage waits until a delivered message contains marker (Postfix
// accepts with its 250 and delivers a moment later) and returns it.
func (h *PostfixNextHop) WaitMessage(t testing.TB, marker string, timeout time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range h.Messages(t) {
			if bytes.Contains(m, []byte(marker)) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message with %q delivered after %v\nlog:\n%s", marker, timeout, h.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
