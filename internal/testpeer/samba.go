package testpeer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"
)

// Fixed facts of the throwaway AD domain.
const (
	SambaRealm   = "EXAMPLE.TEST"
	SambaBaseDN  = "DC=example,DC=test"
	SambaAdminDN = "CN=Administrator,CN=Users," + SambaBaseDN
	// SambaAdminPW is the Administrator's password (AD's complexity
	// rules: upper, lower, digit, symbol).
	SambaAdminPW = "Adm1n!Sealgate"
	// SambaUserPW is the password AddUser gives every account: AD
	// refuses to enable an account without one.
	SambaUserPW = "Us3r!Sealgate"
)

// sambaLockFile serialises Samba DCs across test processes: a DC binds
// the standard ports 389 and 636 (Samba has no option for others), and go
// test runs packages in parallel. A fixed path, not os.TempDir(), so that
// every process agrees whatever TMPDIR says.
const sambaLockFile = "/tmp/sealgate-samba.lock"

// sambaTemplateRoot caches one provisioned domain per Samba version.
// Provisioning costs 6-12 s of CPU; copying the result costs 0.1 s, so
// every package after the first starts its DC in well under a second.
// Only etc/smb.conf holds absolute paths, and it is written anew for each
// copy.
const sambaTemplateRoot = "/tmp/sealgate-samba-template"

// SambaAD is a running Samba Active Directory domain controller for
// realm EXAMPLE.TEST, reachable only on 127.0.0.1. Like a real DC it
// refuses simple binds over plain LDAP ("strong authentication required"),
// so clients use LDAPSURL and trust CAFile, as users.ldap.ca_file would.
type SambaAD struct {
	URL      string // ldap://127.0.0.1:389 (no simple bind without TLS)
	LDAPSURL string // ldaps://127.0.0.1:636
	CAFile   string // PEM of the DC's TLS certificate (self-signed, SAN IP 127.0.0.1)
	BaseDN   string // SambaBaseDN
	AdminDN  string // SambaAdminDN
	AdminPW  string // SambaAdminPW
	Dir      string // the DC's private copy of the domain (etc/, private/, state/)

	pwFile string
	lock   *os.File

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	log     *bytes.Buffer
	stopped bool
}

// StartSambaAD starts a Samba AD DC on 127.0.0.1:389/636 with an empty
// domain (Administrator only) and stops it when the test ends. It holds
// an exclusive lock on /tmp/sealgate-samba.lock meanwhile, so tests in
// other packages that want a DC wait. Start it once per package and share
// it across subtests.
func StartSambaAD(t testing.TB) *SambaAD {
	t.Helper()
	samba := Require(t, "samba")
	for _, p := range []string{"samba-tool", "ldapmodify", "ldapsearch"} {
		Require(t, p)
	}
	// samba-tool provisions from these files (Debian: samba-ad-provision,
	// only recommended by samba-ad-dc).
	if _, err := os.Stat("/usr/share/samba/setup"); err != nil {
		if InCI() {
			t.Fatalf("peer samba-ad-provision is not installed (run `make test`, which installs it)")
		}
		t.Skipf("peer samba-ad-provision is not installed; `make test` installs it")
	}
	s := &SambaAD{
		URL: "ldap://127.0.0.1:389", LDAPSURL: "ldaps://127.0.0.1:636",
		BaseDN: SambaBaseDN, AdminDN: SambaAdminDN, AdminPW: SambaAdminPW,
		Dir: t.TempDir(),
	}
	s.lock = lockSamba(t)
	t.Cleanup(func() { s.lock.Close() }) // closing the file releases the flock
	for _, port := range []string{"389", "636"} {
		if dialOK("127.0.0.1:" + port) {
			t.Fatalf("samba: port %s on 127.0.0.1 is taken by another server (a system samba or slapd?); the test DC needs it", port)
		}
	}
	template := sambaTemplate(t, samba)
	if err := copyTree(template, s.Dir); err != nil {
		t.Fatalf("samba: copying the provisioned domain: %v", err)
	}
	s.CAFile = s.writeTLS(t)
	conf := filepath.Join(s.Dir, "etc", "smb.conf")
	if err := os.WriteFile(conf, []byte(sambaConf(s.Dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.pwFile = filepath.Join(s.Dir, "adminpw")
	if err := os.WriteFile(s.pwFile, []byte(s.AdminPW), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.start(samba, conf); err != nil {
		t.Fatalf("samba: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// lockSamba takes the exclusive lock, waiting for another package's DC to
// stop. The lock is the open file: it is released when the file closes,
// also when the test process dies.
func lockSamba(t testing.TB) *os.File {
	t.Helper()
	f, err := os.OpenFile(sambaLockFile, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("samba lock %s: %v", sambaLockFile, err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("samba lock %s: %v (another test's DC still running?)", sambaLockFile, err)
		}
		if !logged {
			t.Logf("samba: waiting for %s (another package's DC is running)", sambaLockFile)
			logged = true
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sambaTemplate returns the directory of a provisioned domain for this
// Samba version, provisioning it first if needed. Called with the lock
// held, so only one process provisions.
func sambaTemplate(t testing.TB, samba string) string {
	t.Helper()
	ver := strings.TrimSpace(string(MustRun(t, nil, samba, "-V")))
	ver = strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, ver)
	dir := filepath.Join(sambaTemplateRoot, ver)
	if _, err := os.Stat(filepath.Join(dir, "etc", "smb.conf")); err == nil {
		return dir
	}
	if err := os.MkdirAll(sambaTemplateRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(sambaTemplateRoot, "provision-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	res := Run(t, nil, "samba-tool", "domain", "provision", "--targetdir="+tmp,
		"--realm="+SambaRealm, "--domain=EXAMPLE", "--server-role=dc", "--dns-backend=NONE",
		"--use-rfc2307", "--host-name=dc1", "--adminpass="+SambaAdminPW,
		"--option=interfaces=127.0.0.1", "--option=bind interfaces only=yes")
	if res.ExitCode != 0 {
		t.Fatalf("samba-tool domain provision: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	t.Logf("samba: provisioned the domain template in %v", time.Since(start).Round(time.Millisecond))
	// Only etc/smb.conf names the directory; copies rewrite it.
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("samba template: %v", err)
	}
	return dir
}

// sambaConf is the DC's configuration for a copy of the domain in dir.
// Only the LDAP service runs: no KDC, SMB, RPC or NetBIOS ports are taken.
func sambaConf(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\n\tnetbios name = DC1\n\trealm = %s\n\tworkgroup = EXAMPLE\n", SambaRealm)
	b.WriteString("\tserver role = active directory domain controller\n\tserver services = ldap\n")
	b.WriteString("\tinterfaces = 127.0.0.1\n\tbind interfaces only = yes\n\tidmap_ldb:use rfc2307 = yes\n")
	// Schema changes over LDAP (ExtendSchemaExchange), as on a DC that
	// holds the schema master role.
	b.WriteString("\tdsdb:schema update allowed = true\n")
	fmt.Fprintf(&b, "\tprivate dir = %s\n\tlock directory = %s\n\tstate directory = %s\n\tcache directory = %s\n\tbinddns dir = %s\n",
		filepath.Join(dir, "private"), dir, filepath.Join(dir, "state"), filepath.Join(dir, "cache"), filepath.Join(dir, "bind-dns"))
	fmt.Fprintf(&b, "\tlog file = %s\n", filepath.Join(dir, "log.samba"))
	fmt.Fprintf(&b, "\ttls enabled = yes\n\ttls certfile = %s\n\ttls keyfile = %s\n\ttls cafile = %s\n",
		filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "tls.pem"))
	return b.String()
}

// writeTLS gives the DC a certificate clients can verify for 127.0.0.1.
// Samba's autogenerated one names only the DC's FQDN in its CN (Go needs a
// SAN); a customer installs a proper certificate too.
func (s *SambaAD) writeTLS(t testing.TB) string {
	t.Helper()
	certFile, _ := WriteServerCert(t, s.Dir, "dc1.example.test")
	return certFile
}

// WriteServerCert writes dir/tls.pem and dir/tls.key (0600, as Samba and
// slapd demand): a self-signed server certificate for 127.0.0.1,
// localhost and dnsName, valid for a day. Self-signed, so the certificate
// file is also the CA file clients trust (see TrustFile).
func WriteServerCert(t testing.TB, dir, dnsName string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: dnsName, Organization: []string{"sealgate test server"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{dnsName, "localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:        true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TrustFile is a client TLS configuration whose only anchors are the PEM
// certificates in file, as a ca_file setting makes it.
func TrustFile(t testing.TB, file string) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// start runs samba in the foreground with the single process model (one
// process to stop) and waits until an LDAPS bind as Administrator works.
func (s *SambaAD) start(samba, conf string) error {
	var logb bytes.Buffer
	cmd := exec.Command(samba, "-s", conf, "-i", "-M", "single", "--debug-stdout", "--debuglevel=1")
	cmd.Stdout, cmd.Stderr = &logb, &logb
	// If the test binary dies without cleanup, the DC must not keep
	// ports 389/636 for the next run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.log = cmd, done, &logb
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("samba exited: %s", s.Log())
		default:
		}
		if dialOK("127.0.0.1:636") && s.bindOK() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("samba not answering LDAPS on 127.0.0.1:636 after 30s: %s", s.Log())
}

// bindOK reports whether an LDAPS simple bind as Administrator succeeds.
func (s *SambaAD) bindOK() bool {
	// AD has no WhoAmI extended operation: read the root DSE instead.
	cmd := exec.Command("ldapsearch", "-x", "-H", s.LDAPSURL, "-D", s.AdminDN, "-y", s.pwFile, "-b", "", "-s", "base", "dn")
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+s.CAFile)
	return cmd.Run() == nil
}

// Stop terminates the DC; safe to call more than once. Registered with
// t.Cleanup (before the lock is released).
func (s *SambaAD) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Log returns what samba printed so far.
func (s *SambaAD) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// TLSConfig trusts the DC's certificate, as users.ldap.ca_file does.
func (s *SambaAD) TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	return TrustFile(t, s.CAFile)
}

// Apply feeds LDIF to ldapmodify -a over LDAPS as Administrator: plain
// entries are added, changetype records applied.
func (s *SambaAD) Apply(t testing.TB, ldif string) {
	t.Helper()
	res := RunEnv(t, []string{"LDAPTLS_CACERT=" + s.CAFile}, []byte(ldif), "ldapmodify", "-x", "-a", "-H", s.LDAPSURL, "-D", s.AdminDN, "-y", s.pwFile)
	if res.ExitCode != 0 {
		t.Fatalf("ldapmodify on %s: exit %d\n%s%s\nLDIF:\n%s", s.LDAPSURL, res.ExitCode, res.Stdout, res.Stderr, ldif)
	}
}

// Search runs ldapsearch over LDAPS as Administrator and returns its LDIF
// (unwrapped, without AD's continuation references). base "" is BaseDN.
func (s *SambaAD) Search(t testing.TB, base, filter string, attrs ...string) string {
	t.Helper()
	if base == "" {
		base = s.BaseDN
	}
	args := append([]string{"-x", "-LLL", "-o", "ldif-wrap=no", "-H", s.LDAPSURL, "-D", s.AdminDN, "-y", s.pwFile, "-b", base, filter}, attrs...)
	res := RunEnv(t, []string{"LDAPTLS_CACERT=" + s.CAFile}, nil, "ldapsearch", args...)
	if res.ExitCode != 0 {
		t.Fatalf("ldapsearch -b %s %s: exit %d\n%s", base, filter, res.ExitCode, res.Stderr)
	}
	var out []string
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if !strings.HasPrefix(line, "# ref") {
			out = append(out, line)
		}
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}

// AD schema GUIDs for delegation ACEs.
const (
	guidUserSMIMECertificate = "e16a9db2-403c-11d1-a9c0-0000f80367c1" // attribute userSMIMECertificate
	guidUserClass            = "bf967aba-0de6-11d0-a285-00aa003049e2" // class user
)

// AddCertPublisher creates the service account a customer gives sealgate
// (CN=<cn>,CN=Users; password SambaUserPW) and returns its DN. Like on
// Windows, membership in the built-in Cert Publishers group lets it write
// userCertificate of every user (the user class's default security
// descriptor says so) and nothing else; userSMIMECertificate needs a
// delegation, granted domain-wide when delegateSMIME is set (what the
// admin guide asks: "Write userSMIMECertificate" on user objects).
// Reading users and groups needs nothing: Authenticated Users may.
func (s *SambaAD) AddCertPublisher(t testing.TB, cn string, delegateSMIME bool) string {
	t.Helper()
	dn := "CN=" + cn + ",CN=Users," + s.BaseDN
	s.Apply(t, UserLDIF(ADUser{DN: dn, SAMAccountName: cn})+
		"dn: CN=Cert Publishers,CN=Users,"+s.BaseDN+"\nchangetype: modify\nadd: member\nmember: "+dn+"\n\n")
	if delegateSMIME {
		// CA is SDDL for the domain's Cert Publishers group; CI makes
		// the ACE inherit to every user below, existing ones included.
		s.Tool(t, "dsacl", "set", "--objectdn="+s.BaseDN,
			fmt.Sprintf("--sddl=(OA;CI;WP;%s;%s;CA)", guidUserSMIMECertificate, guidUserClass))
	}
	return dn
}

// Tool runs samba-tool on the DC's database (its smb.conf, sam.ldb
// directly: no network credentials needed) and returns its output.
func (s *SambaAD) Tool(t testing.TB, args ...string) string {
	t.Helper()
	args = append(args, "-s", filepath.Join(s.Dir, "etc", "smb.conf"), "-H", filepath.Join(s.Dir, "private", "sam.ldb"))
	return string(MustRun(t, nil, "samba-tool", args...))
}

// ExtendSchemaExchange adds to the DC's schema the two Exchange attributes
// sealgate reads, the way Exchange's schema preparation does: attributeSchema
// objects under Microsoft's OIDs and syntax (LargeInteger, single-valued),
// and the Mail-Recipient auxiliary class, which every user includes, may
// contain them. Call it before adding entries that carry them.
func (s *SambaAD) ExtendSchemaExchange(t testing.TB) {
	t.Helper()
	schema := "CN=Schema,CN=Configuration," + s.BaseDN
	attr := func(cn, oid, ldapName string) string {
		return fmt.Sprintf("dn: CN=%s,%s\nobjectClass: top\nobjectClass: attributeSchema\ncn: %s\nattributeID: %s\n"+
			"attributeSyntax: 2.5.5.16\noMSyntax: 65\nisSingleValued: TRUE\nsearchFlags: 1\nlDAPDisplayName: %s\n\n", cn, schema, cn, oid, ldapName)
	}
	const reload = "dn:\nchangetype: modify\nadd: schemaUpdateNow\nschemaUpdateNow: 1\n-\n\n"
	s.Apply(t, attr("ms-Exch-Recipient-Type-Details", "1.2.840.113556.1.4.7000.102.50855", "msExchRecipientTypeDetails")+
		attr("ms-Exch-Remote-Recipient-Type", "1.2.840.113556.1.4.7000.102.51611", "msExchRemoteRecipientType")+reload+
		"dn: CN=Mail-Recipient,"+schema+"\nchangetype: modify\nadd: mayContain\nmayContain: msExchRecipientTypeDetails\n"+
		"mayContain: msExchRemoteRecipientType\n-\n\n"+reload)
}

// Exchange recipient types for ADUser (msExchRecipientTypeDetails).
const (
	ExchangeSharedMailbox    = 4
	ExchangeRoomMailbox      = 16
	ExchangeEquipmentMailbox = 32
)

// ADUser is an AD user account for UserLDIF.
type ADUser struct {
	DN             string // e.g. CN=Alice,OU=People,DC=example,DC=test
	SAMAccountName string
	Mail           string   // "" for none
	ProxyAddresses []string // e.g. "SMTP:alice@x", "smtp:alias@x", "X500:..."
	Disabled       bool     // userAccountControl 514 instead of 512
	// RecipientTypeDetails and RemoteRecipientType, when not zero, are
	// the Exchange attributes (needs ExtendSchemaExchange first).
	RecipientTypeDetails int64
	RemoteRecipientType  int64
}

// UserLDIF is the LDIF adding u as AD itself wants a new account: class
// user, a password (unicodePwd, UTF-16LE in quotes; only accepted over
// TLS), then userAccountControl.
func UserLDIF(u ADUser) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: user\nsAMAccountName: %s\n", u.DN, u.SAMAccountName)
	if u.Mail != "" {
		fmt.Fprintf(&b, "mail: %s\n", u.Mail)
	}
	for _, p := range u.ProxyAddresses {
		fmt.Fprintf(&b, "proxyAddresses: %s\n", p)
	}
	if u.RecipientTypeDetails != 0 {
		fmt.Fprintf(&b, "msExchRecipientTypeDetails: %d\n", u.RecipientTypeDetails)
	}
	if u.RemoteRecipientType != 0 {
		fmt.Fprintf(&b, "msExchRemoteRecipientType: %d\n", u.RemoteRecipientType)
	}
	uac := 512 // NORMAL_ACCOUNT
	if u.Disabled {
		uac |= 2 // ACCOUNTDISABLE
	}
	fmt.Fprintf(&b, "unicodePwd:: %s\nuserAccountControl: %d\n\n", unicodePwd(SambaUserPW), uac)
	return b.String()
}

// GroupLDIF is the LDIF adding a global security group with members
// (user or group DNs).
func GroupLDIF(dn, sam string, members ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: group\nsAMAccountName: %s\n", dn, sam)
	for _, m := range members {
		fmt.Fprintf(&b, "member: %s\n", m)
	}
	b.WriteString("\n")
	return b.String()
}

func unicodePwd(pw string) string {
	var buf []byte
	for _, u := range utf16.Encode([]rune(`"` + pw + `"`)) {
		buf = append(buf, byte(u), byte(u>>8))
	}
	return base64.StdEncoding.EncodeToString(buf)
}

// copyTree copies the regular files and directories under src into dst
// (sockets and the like are skipped), keeping permissions.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		}
		return nil
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
