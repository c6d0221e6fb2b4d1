package testpeer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EximCacheDir is where scripts/install-peers.sh unpacks Debian's exim4
// packages. Exim is not installed the ordinary way because exim4 and
// postfix conflict (both provide mail-transport-agent) and the tests need
// both: Postfix as a DATA client and the SMTP benchmarks, Exim as the
// BDAT client (Exchange sends BDAT when CHUNKING is offered).
const EximCacheDir = "/var/cache/sealgate-peers/exim"

// eximUser is the user Debian's build of exim looks up when it starts,
// before it reads any configuration; install-peers.sh creates it.
const eximUser = "Debian-exim"

// Exim is an Exim instance in a temp directory acting as a sending MTA:
// every message goes by a manualroute router to one relay host.
type Exim struct {
	Bin  string
	Dir  string
	Conf string
}

// EximOptions configure the instance.
type EximOptions struct {
	RelayHost string // host:port of the next hop (sealgate)
	// TLS requires STARTTLS to the relay host (the certificate is not
	// verified: sealgate's is self-signed in tests).
	TLS bool
	// User/Password authenticate to the relay host (AUTH PLAIN), required
	// when User is set.
	User, Password string
}

// RequireExim returns the path of the unpacked exim (or $SEALGATE_EXIM,
// or an installed exim4), or skips the test (fails it under CI=true) when
// exim cannot run here. Call it before any costly setup.
func RequireExim(t testing.TB) string {
	t.Helper()
	cands := []string{filepath.Join(EximCacheDir, "usr/sbin/exim4")}
	if p := os.Getenv("SEALGATE_EXIM"); p != "" {
		cands = append([]string{p}, cands...)
	}
	if p, err := exec.LookPath("exim4"); err == nil {
		cands = append(cands, p)
	}
	missing := func(why string) {
		t.Helper()
		msg := "peer exim: " + why + "; scripts/install-peers.sh unpacks it into " + EximCacheDir
		if InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin := ""
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			bin = c
			break
		}
	}
	if bin == "" {
		missing("not found")
	}
	// exim_path and the re-exec need an absolute path.
	bin, _ = filepath.Abs(bin)
	if _, err := user.Lookup(eximUser); err != nil {
		missing("user " + eximUser + " does not exist")
	}
	if os.Geteuid() != 0 {
		// Exim switches to its own user for deliveries; only root may.
		missing("needs root")
	}
	return bin
}

// NewExim writes the configuration and spool of a sending Exim into a
// temp directory. Nothing runs until Send.
func NewExim(t testing.TB, opts EximOptions) *Exim {
	t.Helper()
	bin := RequireExim(t)
	// The delivery subprocess runs as Debian-exim: the directory must be
	// reachable and its spool writable by that user, which t.TempDir's
	// 0700 parents are not.
	dir, err := os.MkdirTemp("", "exim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	u, err := user.Lookup(eximUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, d := range []string{"spool", "log"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	e := &Exim{Bin: bin, Dir: dir}
	e.Conf = writeFile(t, dir, "exim.conf", eximConfig(bin, dir, opts))
	// exim re-executes itself with -C and the configuration for each
	// delivery, as Debian-exim.
	os.Chmod(e.Conf, 0o644)
	return e
}

func eximConfig(bin, dir string, opts EximOptions) string {
	var b strings.Builder
	// exim_path: the re-exec for deliveries otherwise looks for the
	// compiled-in /usr/sbin/exim4. The empty retry rule list would bounce
	// at the first temporary failure; a long retry keeps the message
	// spooled instead, so a failed test shows the deferral, not a bounce.
	fmt.Fprintf(&b, `exim_path = %[1]s
primary_hostname = mta.sealgate.test
spool_directory = %[2]s/spool
log_file_path = %[2]s/log/%%slog
keep_environment =
domainlist local_domains =
host_lookup =

begin routers
smarthost:
  driver = manualroute
  route_list = * %[3]s::%[4]s byname
  transport = remote_smtp
  self = send
  no_more

begin transports
remote_smtp:
  driver = smtp
  hosts_try_chunking = *
  tls_verify_hosts =
  tls_try_verify_hosts =
`, bin, dir, hostOf(opts.RelayHost), portOf(opts.RelayHost))
	if opts.TLS {
		b.WriteString("  hosts_require_tls = *\n")
	} else {
		b.WriteString("  hosts_avoid_tls = *\n")
	}
	if opts.User != "" {
		b.WriteString("  hosts_require_auth = *\n")
	}
	b.WriteString("\nbegin retry\n* * F,1h,10m\n")
	if opts.User != "" {
		// ^ separates the AUTH PLAIN fields; a literal ^ would need doubling.
		fmt.Fprintf(&b, "\nbegin authenticators\nplain:\n  driver = plaintext\n  public_name = PLAIN\n  client_send = ^%s^%s\n",
			strings.ReplaceAll(opts.User, "^", "^^"), strings.ReplaceAll(opts.Password, "^", "^^"))
	}
	return b.String()
}

// EximDelivery is what one Send did.
type EximDelivery struct {
	// Dialogue is exim's -v output: the SMTP conversation with the relay
	// host as exim saw it ("SMTP>> BDAT 1234 LAST").
	Dialogue string
	// BDAT lists the chunk commands exim sent, in order.
	BDAT []string
	// DATA is whether exim sent DATA (it did not use CHUNKING).
	DATA bool
}

// exim marks commands it writes as SMTP>> (sent), SMTP|> (pipelined) or
// SMTP+> (buffered with what follows).
var (
	bdatCommand = regexp.MustCompile(`SMTP[>|+]> (BDAT \d+(?: LAST)?)`)
	dataCommand = regexp.MustCompile(`SMTP[>|+]> DATA\b`)
)

// Send submits msg (LF or CRLF line ends) to exim with -odf, so that exim
// delivers it to the relay host before it returns, and fails the test
// unless exim logged the delivery.
func (e *Exim) Send(t testing.TB, from string, to []string, msg []byte) EximDelivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"-C", e.Conf, "-odf", "-oi", "-v", "-f", from, "--"}, to...)
	cmd := exec.CommandContext(ctx, e.Bin, args...)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	d := EximDelivery{Dialogue: string(out)}
	for _, m := range bdatCommand.FindAllStringSubmatch(d.Dialogue, -1) {
		d.BDAT = append(d.BDAT, m[1])
	}
	d.DATA = dataCommand.MatchString(d.Dialogue)
	if err != nil {
		t.Fatalf("exim %s: %v\n%s\nmainlog:\n%s", strings.Join(args, " "), err, out, e.Log())
	}
	// -v echoes this submission's log lines: "=>" delivered, "==" deferred,
	// "**" failed.
	if !strings.Contains(d.Dialogue, "  => ") || strings.Contains(d.Dialogue, "  == ") || strings.Contains(d.Dialogue, "  ** ") {
		t.Fatalf("exim did not deliver:\n%s\nmainlog:\n%s", out, e.Log())
	}
	return d
}

// Log returns exim's main log so far.
func (e *Exim) Log() string { return readLog(filepath.Join(e.Dir, "log", "mainlog")) }
