package testpeer

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// adLikeSchema is written next to slapd.conf; embedded so that tests in any
// package (any working directory) can start slapd.
//
//go:embed testdata/ad-like.schema
var adLikeSchema []byte

// SlapdOptions configures a throwaway OpenLDAP server.
type SlapdOptions struct {
	// Suffix is the naming context, default "dc=example,dc=test". Its entry
	// is created automatically unless LDIF contains it.
	Suffix string
	// LDIF is added (ldapmodify -a, so plain entries and changetype records
	// both work) once the server runs, which lets the memberof overlay see
	// the adds. `attr:< file:///path` values are allowed.
	LDIF string
	// RootPW is the password of RootDN; default "secret".
	RootPW string
	// TLSCertFile and TLSKeyFile, when both set, make slapd also listen on
	// ldaps:// (LDAPSURL) with that certificate.
	TLSCertFile, TLSKeyFile string
}

// Slapd is a running slapd bound to 127.0.0.1 on a free port. It is stopped
// when the test ends.
type Slapd struct {
	URL      string // ldap://127.0.0.1:PORT
	LDAPSURL string // ldaps://127.0.0.1:PORT2 when TLS was configured, else ""
	Addr     string // 127.0.0.1:PORT
	Suffix   string
	RootDN   string // cn=admin,<Suffix>
	RootPW   string
	Dir      string // the server's temp directory (slapd.conf, db/)

	conf   string
	pwFile string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	stderr  *bytes.Buffer
	frozen  bool
	stopped bool
}

// StartSlapd starts slapd with the core, cosine, nis, inetorgperson schemas
// plus an AD-like schema (proxyAddresses, sAMAccountName, userPrincipalName,
// userAccountControl in the auxiliary classes adUser and adGroup), back_mdb
// the memberof overlay (groupOfNames/member → memberOf) and refint on member,
// then adds opts.LDIF. Ready in well under a second.
func StartSlapd(t testing.TB, opts SlapdOptions) *Slapd {
	t.Helper()
	slapd := Require(t, "slapd")
	Require(t, "ldapmodify")
	if opts.Suffix == "" {
		opts.Suffix = "dc=example,dc=test"
	}
	if opts.RootPW == "" {
		opts.RootPW = "secret"
	}
	dir := t.TempDir()
	s := &Slapd{
		Suffix: opts.Suffix,
		RootDN: "cn=admin," + opts.Suffix,
		RootPW: opts.RootPW,
		Dir:    dir,
		conf:   filepath.Join(dir, "slapd.conf"),
		pwFile: filepath.Join(dir, "rootpw"),
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("slapd setup: %v", err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "db"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "ad-like.schema"), adLikeSchema, 0o644))
	// ldapmodify -y uses the whole file as the password: no trailing newline.
	must(os.WriteFile(s.pwFile, []byte(s.RootPW), 0o600))
	must(os.WriteFile(s.conf, []byte(s.config(opts)), 0o600))
	if res := Run(t, nil, "slaptest", "-u", "-f", s.conf); res.ExitCode != 0 {
		t.Fatalf("slaptest rejected slapd.conf: %s\n%s", res.Stderr, s.config(opts))
	}

	// A free port can be taken between FreePort and slapd's bind; retry.
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		s.URL = "ldap://" + s.Addr
		urls := s.URL + "/"
		if opts.TLSCertFile != "" && opts.TLSKeyFile != "" {
			s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", FreePort(t))
			urls += " " + s.LDAPSURL + "/"
		}
		if err := s.start(slapd, urls); err != nil {
			lastErr = err.Error()
			continue
		}
		t.Cleanup(s.Stop)
		if opts.LDIF == "" || !containsDN(opts.LDIF, s.Suffix) {
			s.Apply(t, baseEntry(s.Suffix))
		}
		if strings.TrimSpace(opts.LDIF) != "" {
			s.Apply(t, opts.LDIF)
		}
		return s
	}
	t.Fatalf("slapd did not start: %s", lastErr)
	return nil
}

func (s *Slapd) config(opts SlapdOptions) string {
	var b strings.Builder
	for _, sc := range []string{"core", "cosine", "nis", "inetorgperson"} {
		fmt.Fprintf(&b, "include /etc/ldap/schema/%s.schema\n", sc)
	}
	fmt.Fprintf(&b, "include %s\n", filepath.Join(s.Dir, "ad-like.schema"))
	fmt.Fprintf(&b, "pidfile %s\nargsfile %s\n", filepath.Join(s.Dir, "slapd.pid"), filepath.Join(s.Dir, "slapd.args"))
	b.WriteString("modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\nmoduleload refint\n")
	if opts.TLSCertFile != "" && opts.TLSKeyFile != "" {
		fmt.Fprintf(&b, "TLSCertificateFile %s\nTLSCertificateKeyFile %s\n", opts.TLSCertFile, opts.TLSKeyFile)
	}
	// Anonymous read like a public key server; writes need the rootdn.
	b.WriteString("access to * by * read\n")
	fmt.Fprintf(&b, "database mdb\nmaxsize 67108864\nsuffix \"%s\"\nrootdn \"%s\"\nrootpw %s\ndirectory %s\n",
		s.Suffix, s.RootDN, s.RootPW, filepath.Join(s.Dir, "db"))
	b.WriteString("index objectClass eq\nindex mail,proxyAddresses eq\n")
	// memberof-refint only fixes memberOf; refint removes a deleted or
	// renamed entry from the groups' member values, as AD does.
	b.WriteString("overlay refint\nrefint_attributes member\n")
	b.WriteString("overlay memberof\nmemberof-group-oc groupOfNames\nmemberof-member-ad member\n" +
		"memberof-memberof-ad memberOf\nmemberof-refint true\n")
	return b.String()
}

// start launches slapd in the foreground (-d 0 keeps it attached, so the
// process we hold is slapd itself) and waits until it accepts connections
// or exits. Running as root needs no -u/-g: files stay root's and the
// temp dir is private.
func (s *Slapd) start(slapd, urls string) error {
	var errb bytes.Buffer
	cmd := exec.Command(slapd, "-f", s.conf, "-h", urls, "-d", "0")
	cmd.Stdout, cmd.Stderr = &errb, &errb
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("slapd exited: %s", errb.String())
		default:
		}
		if dialOK(s.Addr) {
			s.mu.Lock()
			s.cmd, s.done, s.stderr, s.stopped = cmd, done, &errb, false
			s.mu.Unlock()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("slapd not listening on %s after 10s: %s", s.Addr, errb.String())
}

// Apply feeds LDIF to ldapmodify -a as the rootdn: plain entries are added,
// records with changetype: modify/delete/modrdn do that.
func (s *Slapd) Apply(t testing.TB, ldif string) {
	t.Helper()
	res := Run(t, []byte(ldif), "ldapmodify", "-x", "-a", "-H", s.URL, "-D", s.RootDN, "-y", s.pwFile)
	if res.ExitCode != 0 {
		t.Fatalf("ldapmodify on %s: exit %d\n%s%s\nLDIF:\n%s", s.URL, res.ExitCode, res.Stdout, res.Stderr, ldif)
	}
}

// Search runs ldapsearch (as the rootdn) and returns its LDIF output, for
// tests that check what the server really holds. attrs may include
// "memberOf" or "+" for operational attributes.
func (s *Slapd) Search(t testing.TB, base, filter string, attrs ...string) string {
	t.Helper()
	if base == "" {
		base = s.Suffix
	}
	args := append([]string{"-x", "-LLL", "-o", "ldif-wrap=no", "-H", s.URL, "-D", s.RootDN, "-y", s.pwFile, "-b", base, filter}, attrs...)
	return string(MustRun(t, nil, "ldapsearch", args...))
}

// Freeze stops the slapd process (SIGSTOP): the kernel still accepts TCP
// connections but nothing answers — a hanging server. Thaw resumes it.
func (s *Slapd) Freeze(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.stopped {
		t.Fatalf("slapd is not running")
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze slapd: %v", err)
	}
	// SIGSTOP takes effect asynchronously: until every thread has
	// stopped, a worker thread can still answer a query. Wait for it.
	waitStopped(t, s.cmd.Process.Pid)
	s.frozen = true
}

// waitStopped waits until every thread of pid is in the stopped state
// ("T" in /proc/PID/task/TID/stat).
func waitStopped(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			t.Fatalf("freeze slapd: cannot read its threads: %v", err)
		}
		stopped := true
		for _, task := range tasks {
			b, err := os.ReadFile(task)
			if err != nil {
				stopped = false // thread exiting; look again
				break
			}
			// The state follows the command name in parentheses.
			i := bytes.LastIndexByte(b, ')')
			if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
				stopped = false
				break
			}
		}
		if stopped {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("freeze slapd: threads still running after SIGSTOP")
}

// Thaw resumes a frozen slapd.
func (s *Slapd) Thaw(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.frozen {
		if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatalf("thaw slapd: %v", err)
		}
		s.frozen = false
	}
}

// Stop terminates slapd (a down server); safe to call more than once. It
// is registered with t.Cleanup.
func (s *Slapd) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.stopped {
		return
	}
	s.stopped = true
	if s.frozen {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
		s.frozen = false
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Restart starts a stopped slapd again on the same port with the same
// data (a server that comes back).
func (s *Slapd) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	urls := s.URL + "/"
	if s.LDAPSURL != "" {
		urls += " " + s.LDAPSURL + "/"
	}
	if err := s.start(Require(t, "slapd"), urls); err != nil {
		t.Fatalf("restart slapd: %v", err)
	}
}

// Log returns what slapd printed so far (useful in failure messages).
func (s *Slapd) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stderr == nil {
		return ""
	}
	return s.stderr.String()
}

func baseEntry(suffix string) string {
	rdn := strings.SplitN(suffix, ",", 2)[0]
	attr, val, _ := strings.Cut(rdn, "=")
	switch strings.ToLower(strings.TrimSpace(attr)) {
	case "dc":
		return fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: %s\no: %s\n", suffix, val, val)
	case "o":
		return fmt.Sprintf("dn: %s\nobjectClass: organization\no: %s\n", suffix, val)
	case "ou":
		return fmt.Sprintf("dn: %s\nobjectClass: organizationalUnit\nou: %s\n", suffix, val)
	default:
		return fmt.Sprintf("dn: %s\nobjectClass: organizationalUnit\nou: %s\n", suffix, val)
	}
}

// containsDN reports whether ldif has an entry whose dn is dn.
func containsDN(ldif, dn string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), " ", "")) }
	for _, line := range strings.Split(ldif, "\n") {
		if v, ok := strings.CutPrefix(line, "dn:"); ok && norm(v) == norm(dn) {
			return true
		}
	}
	return false
}

func dialOK(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
