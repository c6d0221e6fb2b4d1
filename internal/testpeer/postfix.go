package testpeer

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Postfix is a Postfix instance in a temp directory acting as the sending
// MTA (the Exchange role): it accepts mail on SMTPAddr and relays all of
// it to one relay host.
type Postfix struct {
	Dir      string
	SMTPAddr string
	LogFile  string
}

// PostfixOptions configure the instance.
type PostfixOptions struct {
	RelayHost string // host:port of the next hop (sealgate)
	// TLSEncrypt requires STARTTLS to the relay host (smtp_tls_security_level=encrypt).
	TLSEncrypt bool
	// User/Password authenticate to the relay host (SASL PLAIN).
	User, Password string
}

// StartPostfix starts Postfix (≈2.5 s) and stops it when the test ends.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	main := fmt.Sprintf(`mydestination =
mynetworks = 127.0.0.0/8
relayhost = [%s]:%s
smtp_helo_name = mta.sealgate.test
`, hostOf(opts.RelayHost), portOf(opts.RelayHost))
	if opts.TLSEncrypt {
		main += "smtp_tls_security_level = encrypt\n"
	}
	if opts.User != "" {
		main += fmt.Sprintf("smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = inline:{ {[%s]:%s=%s:%s} }\nsmtp_sasl_security_options = noanonymous\nsmtp_sasl_tls_security_options = noanonymous\n",
			hostOf(opts.RelayHost), portOf(opts.RelayHost), opts.User, opts.Password)
	}
	return startPostfix(t, "mta.sealgate.test", func(string) string { return main })
}

// startPostfix runs a Postfix instance in a new temp directory, its smtpd
// on a free loopback port, with the main.cf settings every role shares
// plus those setup returns; setup may write the files they name into dir.
// The instance stops when the test ends.
func startPostfix(t testing.TB, hostname string, setup func(dir string) (mainCF string)) *Postfix {
	t.Helper()
	Require(t, "postfix")
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatal("testpeer: Postfix needs root")
		}
		t.Skip("testpeer: Postfix needs root")
	}
	dir, err := os.MkdirTemp("", "postfix-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	p := &Postfix{Dir: dir, LogFile: filepath.Join(dir, "log")}
	for _, d := range []string{"queue", "data"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	// master.lock and the TLS caches live in data_directory, which
	// Postfix wants owned by mail_owner.
	uid, gid := postfixIDs(t)
	os.Chown(filepath.Join(dir, "data"), uid, gid)
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
myhostname = %[2]s
mydomain = sealgate.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file = %[1]s/log
maillog_file_prefixes = %[1]s
`, dir, hostname)
	writeFile(t, dir, "main.cf", main+setup(dir))
	// master (started with -w by `postfix start`) binds the smtpd port and
	// fails the start when it cannot, so a port taken since it was picked
	// is retried, never mistaken for ours.
	err = OnFreePort(func(port int) error {
		p.SMTPAddr = fmt.Sprintf("127.0.0.1:%d", port)
		withSMTPD := append(append([]byte(nil), master...), fmt.Sprintf("%s inet n - n - - smtpd\npostlog unix-dgram n - n - 1 postlogd\n", p.SMTPAddr)...)
		writeFile(t, dir, "master.cf", string(withSMTPD))
		MustRun(t, nil, "postconf", "-c", dir, "-M#", "smtp/inet")
		MustRun(t, nil, "postconf", "-c", dir, "-F", "*/*/chroot = n")
		if r := Run(t, nil, "postfix", "-c", dir, "start"); r.ExitCode != 0 {
			err := fmt.Errorf("postfix start: %s%s\nlog: %s", r.Stdout, r.Stderr, readLog(p.LogFile))
			// master dies before its logger runs, so the bind error is not
			// in the log: a port that answers now is someone else's.
			if dialOK(p.SMTPAddr) {
				err = fmt.Errorf("%s is taken: %w (%w)", p.SMTPAddr, syscall.EADDRINUSE, err)
			}
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("postfix", "-c", dir, "stop").Run()
		time.Sleep(200 * time.Millisecond)
		os.RemoveAll(dir)
	})
	WaitPort(t, p.SMTPAddr, 30*time.Second)
	return p
}

// Log returns Postfix's log so far.
func (p *Postfix) Log() string { return readLog(p.LogFile) }

func readLog(f string) string {
	b, _ := os.ReadFile(f)
	return string(b)
}

func hostOf(hp string) string {
	for i := len(hp) - 1; i >= 0; i-- {
		if hp[i] == ':' {
			return hp[:i]
		}
	}
	return hp
}

func portOf(hp string) string {
	for i := len(hp) - 1; i >= 0; i-- {
		if hp[i] == ':' {
			return hp[i+1:]
		}
	}
	return "25"
}
