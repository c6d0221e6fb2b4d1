package testpeer

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNS peers: Knot DNS as the authoritative server of a test zone (signed by
// knot itself) and unbound as the validating resolver that sealgate trusts,
// both on 127.0.0.1 on free ports, stopped when the test ends.

// Stub points unbound at the authoritative server of one zone.
type Stub struct {
	Zone string // "example.test."
	Addr string // host:port of the authoritative server (a Knot's Addr)
}

// UnboundConfig configures a throwaway unbound.
type UnboundConfig struct {
	// LocalData are RR lines with absolute names that unbound answers
	// itself ("mx.example.org. A 127.0.0.2"; TXT data longer than 255
	// bytes via TXT()); they are not signed, so never authentic. A name
	// in LocalData answers only the types given (NODATA for others).
	LocalData []string
	// Stubs are zones unbound resolves at the given authoritative servers.
	Stubs []Stub
	// TrustAnchors are DS or DNSKEY RR lines (Knot.DS()). With any,
	// unbound validates ("validator iterator") and sets the AD bit on
	// answers it could prove; answers that fail the proof are SERVFAIL.
	TrustAnchors []string
}

// Unbound is a running unbound. Every name outside LocalData and the stub
// zones is answered NXDOMAIN at once (it never asks the internet).
type Unbound struct {
	Addr string // 127.0.0.1:PORT, UDP and TCP
	Dir  string
	Conf string

	d *daemon
}

// StartUnbound starts unbound in the foreground on a free port and waits
// until it answers.
func StartUnbound(t testing.TB, cfg UnboundConfig) *Unbound {
	t.Helper()
	bin := Require(t, "unbound")
	u := &Unbound{Dir: t.TempDir()}
	u.Conf = filepath.Join(u.Dir, "unbound.conf")
	err := OnFreePort(func(port int) error {
		u.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf, err := u.config(cfg, port)
		if err != nil {
			return err
		}
		if err := os.WriteFile(u.Conf, []byte(conf), 0o600); err != nil {
			return fmt.Errorf("unbound.conf: %w", err)
		}
		// "invalid." is one of unbound's default static zones: an instant
		// NXDOMAIN once it serves. The log line makes sure the answer is
		// ours and not another test's server that holds the UDP port.
		d, err := startDaemon("unbound", exec.Command(bin, "-d", "-c", u.Conf), "start of service", "", func() bool {
			return dnsAnswers(u.Addr, "ready.invalid.", dns.TypeA)
		})
		if err != nil {
			return fmt.Errorf("%w\n%s", err, conf)
		}
		u.d = d
		return nil
	})
	if err != nil {
		t.Fatalf("starting unbound: %v", err)
	}
	t.Cleanup(u.Stop)
	return u
}

func (u *Unbound) config(cfg UnboundConfig, port int) (string, error) {
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "server:\n")
	fmt.Fprintf(&b, "  interface: 127.0.0.1\n  port: %d\n", port)
	fmt.Fprintf(&b, "  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n")
	fmt.Fprintf(&b, "  directory: %s\n  pidfile: %s\n", q(u.Dir), q(filepath.Join(u.Dir, "unbound.pid")))
	b.WriteString("  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n")
	b.WriteString("  num-threads: 1\n  so-reuseport: no\n  outgoing-range: 64\n  num-queries-per-thread: 32\n")
	b.WriteString("  msg-cache-size: 1m\n  rrset-cache-size: 1m\n  key-cache-size: 1m\n  neg-cache-size: 1m\n")
	b.WriteString("  trust-anchor-signaling: no\n  root-key-sentinel: no\n  val-log-level: 2\n")
	// Peers share the clock: no grace for expired signatures (the default
	// skew is 10% of the signature's lifetime, at least an hour).
	b.WriteString("  val-sig-skew-min: 0\n  val-sig-skew-max: 0\n")
	if len(cfg.TrustAnchors) > 0 {
		b.WriteString("  module-config: \"validator iterator\"\n")
		for _, ta := range cfg.TrustAnchors {
			if strings.ContainsAny(ta, "\"\n") {
				return "", fmt.Errorf("trust anchor %q: quotes and newlines are not allowed", ta)
			}
			fmt.Fprintf(&b, "  trust-anchor: %s\n", q(ta))
		}
	} else {
		b.WriteString("  module-config: \"iterator\"\n")
	}
	// Nothing leaves loopback: the root is a static zone (NXDOMAIN for
	// all it does not hold), the stub zones pass through to their servers.
	b.WriteString("  local-zone: \".\" static\n  local-zone: \"test.\" nodefault\n")
	for _, s := range cfg.Stubs {
		fmt.Fprintf(&b, "  local-zone: %s transparent\n", q(dns.Fqdn(s.Zone)))
	}
	for _, rr := range cfg.LocalData {
		if strings.ContainsAny(rr, "\n'") {
			return "", fmt.Errorf("local-data %q: one record per line, no single quotes", rr)
		}
		// Single quotes: TXT strings keep their double quotes.
		fmt.Fprintf(&b, "  local-data: '%s'\n", rr)
	}
	b.WriteString("remote-control:\n  control-enable: no\n")
	for _, s := range cfg.Stubs {
		host, p, err := net.SplitHostPort(s.Addr)
		if err != nil {
			return "", fmt.Errorf("stub %s address %q: %w", s.Zone, s.Addr, err)
		}
		fmt.Fprintf(&b, "stub-zone:\n  name: %s\n  stub-addr: %s@%s\n", q(dns.Fqdn(s.Zone)), host, p)
	}
	return b.String(), nil
}

// TXT is a TXT record line for owner holding text, split into strings of
// at most 255 bytes as DNS requires (a DKIM key record is longer), with
// quotes and backslashes escaped. For LocalData or a zone's records.
func TXT(owner, text string) string {
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	var b strings.Builder
	b.WriteString(owner + " TXT")
	for {
		n := min(len(text), 255)
		b.WriteString(` "` + esc.Replace(text[:n]) + `"`)
		text = text[n:]
		if text == "" {
			return b.String()
		}
	}
}

// Stop terminates unbound; safe to call more than once.
func (u *Unbound) Stop() {
	if u.d != nil {
		u.d.stop()
	}
}

// Log returns what unbound printed (validation failures at val-log-level 2).
func (u *Unbound) Log() string {
	if u.d == nil {
		return ""
	}
	return u.d.log()
}

// LogContains waits up to 5 s for unbound to print substr (its log
// arrives through a pipe, after the answer it explains).
func (u *Unbound) LogContains(substr string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if strings.Contains(u.Log(), substr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// KnotOptions change how StartKnotWith serves a zone.
type KnotOptions struct {
	// Unsigned serves the zone without DNSSEC: with no trust anchor for
	// it, a validating resolver's answers are "insecure" (no AD bit).
	Unsigned bool
	// Replace maps a record line of records to another with the same owner
	// and type. The zone is signed with the original records, then served
	// (signing off) with the replacement and the original signatures: a
	// validating resolver finds the replaced RRset "bogus" (SERVFAIL).
	Replace map[string]string
	// Expired makes knot sign with signatures valid for 4 seconds (every
	// TTL is 1 s), waits until they have expired and serves them (signing
	// off): a validating resolver finds every signed answer "bogus". Adds
	// about 5 s to the start.
	Expired bool
}

// Knot is a running knotd serving one zone.
type Knot struct {
	Addr string // 127.0.0.1:PORT, UDP and TCP
	Zone string // fully qualified
	Dir  string

	ds        []string
	dnskey    []string
	d         *daemon
	shortSigs bool // signatures that expire within seconds
}

// StartKnot starts knotd serving zone with records, signed by knot with
// keys it makes in the test directory (ECDSA P-256, NSEC). Records are zone
// file lines relative to the zone ("mx1 A 127.0.0.2", "@ MX 10 mx1");
// SOA and NS are added when missing.
func StartKnot(t testing.TB, zone string, records []string) *Knot {
	t.Helper()
	return StartKnotWith(t, zone, records, KnotOptions{})
}

// StartKnotWith is StartKnot with options for insecure and bogus zones.
func StartKnotWith(t testing.TB, zone string, records []string, opts KnotOptions) *Knot {
	t.Helper()
	bin := Require(t, "knotd")
	Require(t, "keymgr")
	zone = dns.Fqdn(strings.ToLower(zone))
	// knotd's control socket lives in its run directory, and a unix socket
	// path is limited to 108 bytes: t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "sg-knot-")
	if err != nil {
		t.Fatalf("knot dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	k := &Knot{Zone: zone, Dir: dir}
	zoneFile := filepath.Join(dir, "zone.db")
	ttl := 300
	if opts.Expired {
		ttl = 1 // knot refuses a signature refresh shorter than the TTLs
	}
	if err := os.WriteFile(zoneFile, []byte(zoneText(zone, records, ttl)), 0o600); err != nil {
		t.Fatalf("zone file: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatalf("knot db: %v", err)
	}
	signed := !opts.Unsigned
	k.shortSigs = opts.Expired
	if err := k.start(bin, signed); err != nil {
		t.Fatalf("starting knotd: %v", err)
	}
	t.Cleanup(k.Stop)
	if signed {
		k.trustAnchors(t)
	}
	if len(opts.Replace) > 0 || opts.Expired {
		if opts.Unsigned {
			t.Fatalf("knot: Replace and Expired need a signed zone")
		}
		k.tamper(t, bin, zoneFile, opts.Replace, opts.Expired)
	}
	return k
}

// Stub is the unbound stub entry for this server.
func (k *Knot) Stub() Stub { return Stub{Zone: k.Zone, Addr: k.Addr} }

// DS returns the zone's trust anchor as DS lines (SHA-256 digest of the
// KSK) as keymgr prints them; nil for an unsigned zone.
func (k *Knot) DS() []string { return append([]string(nil), k.ds...) }

// DNSKEY returns the zone's KSK as DNSKEY lines; nil for an unsigned zone.
func (k *Knot) DNSKEY() []string { return append([]string(nil), k.dnskey...) }

// Stop terminates knotd; safe to call more than once.
func (k *Knot) Stop() {
	if k.d != nil {
		k.d.stop()
	}
}

// Log returns what knotd printed.
func (k *Knot) Log() string {
	if k.d == nil {
		return ""
	}
	return k.d.log()
}

func (k *Knot) conf(port int, signed bool) string {
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  rundir: %s\n  listen: 127.0.0.1@%d\n", q(k.Dir), port)
	b.WriteString("log:\n  - target: stderr\n    any: info\n")
	fmt.Fprintf(&b, "database:\n  storage: %s\n", q(filepath.Join(k.Dir, "db")))
	b.WriteString("acl:\n  - id: loopback\n    address: 127.0.0.0/8\n    action: transfer\n")
	b.WriteString("policy:\n  - id: test\n    algorithm: ecdsap256sha256\n    nsec3: off\n")
	if k.shortSigs {
		b.WriteString("    rrsig-lifetime: 4s\n    rrsig-refresh: 2s\n    rrsig-pre-refresh: 1s\n    propagation-delay: 0\n")
	}
	fmt.Fprintf(&b, "zone:\n  - domain: %s\n    storage: %s\n    file: zone.db\n", q(k.Zone), q(k.Dir))
	b.WriteString("    journal-content: none\n    zonefile-sync: -1\n    acl: loopback\n")
	if signed {
		b.WriteString("    dnssec-signing: on\n    dnssec-policy: test\n")
	} else {
		b.WriteString("    dnssec-signing: off\n")
	}
	return b.String()
}

func (k *Knot) start(bin string, signed bool) error {
	conf := filepath.Join(k.Dir, "knot.conf")
	return OnFreePort(func(port int) error {
		k.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := os.WriteFile(conf, []byte(k.conf(port, signed)), 0o600); err != nil {
			return fmt.Errorf("knot.conf: %w", err)
		}
		// A zone knot cannot load leaves knotd running without it.
		d, err := startDaemon("knotd", exec.Command(bin, "-c", conf), "server started", "zone event 'load' failed", func() bool {
			return knotServes(k.Addr, k.Zone, signed)
		})
		if err != nil {
			return err
		}
		k.d = d
		return nil
	})
}

// trustAnchors asks keymgr for the DS and knotd for the DNSKEY of the KSK.
func (k *Knot) trustAnchors(t testing.TB) {
	t.Helper()
	out := MustRun(t, nil, "keymgr", "-c", filepath.Join(k.Dir, "knot.conf"), k.Zone, "ds")
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		// "example.test. DS 43618 13 2 <hex>": SHA-256 only (unbound takes all).
		if len(f) >= 6 && f[1] == "DS" && f[4] == "2" {
			k.ds = append(k.ds, strings.Join(f, " "))
		}
	}
	if len(k.ds) == 0 {
		t.Fatalf("keymgr printed no SHA-256 DS for %s:\n%s", k.Zone, out)
	}
	in, err := dnsQuery(k.Addr, k.Zone, dns.TypeDNSKEY, "tcp")
	if err != nil {
		t.Fatalf("DNSKEY of %s: %v", k.Zone, err)
	}
	for _, rr := range in.Answer {
		if key, ok := rr.(*dns.DNSKEY); ok && key.Flags&dns.SEP != 0 {
			k.dnskey = append(k.dnskey, strings.ReplaceAll(key.String(), "\t", " "))
		}
	}
	if len(k.dnskey) == 0 {
		t.Fatalf("knotd serves no KSK for %s", k.Zone)
	}
}

// tamper transfers the signed zone, replaces records keeping their
// signatures (and, with expire, waits until every signature has expired),
// and serves the result with signing off.
func (k *Knot) tamper(t testing.TB, bin, zoneFile string, replace map[string]string, expire bool) {
	t.Helper()
	tr := new(dns.Transfer)
	m := new(dns.Msg)
	m.SetAxfr(k.Zone)
	ch, err := tr.In(m, k.Addr)
	if err != nil {
		t.Fatalf("AXFR %s: %v", k.Zone, err)
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("AXFR %s: %v", k.Zone, env.Error)
		}
		rrs = append(rrs, env.RR...)
	}
	if len(rrs) > 1 {
		rrs = rrs[:len(rrs)-1] // the closing SOA
	}
	parse := func(line string) dns.RR {
		rr, err := dns.NewRR("$ORIGIN " + k.Zone + "\n$TTL 300\n" + line)
		if err != nil || rr == nil {
			t.Fatalf("knot Replace: record %q: %v", line, err)
		}
		return rr
	}
	for from, to := range replace {
		old, nu := parse(from), parse(to)
		if old.Header().Rrtype != nu.Header().Rrtype || !strings.EqualFold(old.Header().Name, nu.Header().Name) {
			t.Fatalf("knot Replace: %q and %q differ in owner or type", from, to)
		}
		found := false
		for i, rr := range rrs {
			if sameRR(rr, old) {
				nu.Header().Ttl = rr.Header().Ttl
				rrs[i], found = nu, true
			}
		}
		if !found {
			t.Fatalf("knot Replace: %q is not in the signed zone", from)
		}
	}
	var b strings.Builder
	var last time.Time
	for _, rr := range rrs {
		b.WriteString(rr.String())
		b.WriteByte('\n')
		if sig, ok := rr.(*dns.RRSIG); ok {
			if exp := time.Unix(int64(sig.Expiration), 0); exp.After(last) {
				last = exp
			}
		}
	}
	k.Stop()
	if expire {
		if last.IsZero() || last.After(time.Now().Add(time.Minute)) {
			t.Fatalf("knot signed %s with signatures valid until %v, not seconds", k.Zone, last)
		}
		// RRSIG times have one-second resolution: wait past the last.
		time.Sleep(time.Until(last) + 1100*time.Millisecond)
	}
	if err := os.WriteFile(zoneFile, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("zone file: %v", err)
	}
	if err := k.start(bin, false); err != nil {
		t.Fatalf("restarting knotd with the altered zone: %v", err)
	}
}

// sameRR compares two records in wire form, ignoring the TTL and the
// owner's case (the transfer spells hex data in lower case, the test may
// not).
func sameRR(a, b dns.RR) bool {
	wire := func(rr dns.RR) []byte {
		c := dns.Copy(rr)
		c.Header().Ttl = 0
		c.Header().Name = strings.ToLower(c.Header().Name)
		buf := make([]byte, dns.Len(c)+1)
		n, err := dns.PackRR(c, buf, 0, nil, false)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	wa, wb := wire(a), wire(b)
	return wa != nil && bytes.Equal(wa, wb)
}

// zoneText is the zone file: the records after a SOA and NS unless given.
func zoneText(zone string, records []string, ttl int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL %d\n", zone, ttl)
	hasSOA, hasNS := false, false
	zp := dns.NewZoneParser(strings.NewReader(strings.Join(records, "\n")+"\n"), zone, "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if strings.EqualFold(rr.Header().Name, zone) {
			switch rr.Header().Rrtype {
			case dns.TypeSOA:
				hasSOA = true
			case dns.TypeNS:
				hasNS = true
			}
		}
	}
	// A record miekg cannot parse is left to knotd, which says why.
	if !hasSOA {
		fmt.Fprintf(&b, "@ SOA ns.%s hostmaster.%s 1 3600 900 604800 %d\n", zone, zone, ttl)
	}
	if !hasNS {
		fmt.Fprintf(&b, "@ NS ns.%s\nns.%s A 127.0.0.1\n", zone, zone)
	}
	for _, r := range records {
		b.WriteString(r)
		b.WriteByte('\n')
	}
	return b.String()
}

// daemon is a foreground DNS server process.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	out     *lockedBuffer
	stopped bool
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon starts cmd and waits until it printed started and ready()
// holds, or until it exits or prints failed (then its output is the
// error, "address already in use" included).
func startDaemon(name string, cmd *exec.Cmd, started, failed string, ready func() bool) (*daemon, error) {
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{}), out: out}
	go func() { _ = cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return nil, fmt.Errorf("%s exited: %s", name, out.String())
		default:
		}
		if failed != "" && strings.Contains(out.String(), failed) {
			d.stop()
			return nil, fmt.Errorf("%s failed: %s", name, out.String())
		}
		if strings.Contains(out.String(), started) && ready() {
			return d, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.stop()
	return nil, fmt.Errorf("%s not answering after 15s: %s", name, out.String())
}

func (d *daemon) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.stopped = true
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *daemon) log() string { return d.out.String() }

// dnsQuery asks addr one question (RD set, DO set) over net ("udp"/"tcp").
func dnsQuery(addr, name string, qtype uint16, network string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(1232, true)
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, addr)
	return in, err
}

// dnsAnswers reports whether a server answers at addr (any rcode).
func dnsAnswers(addr, name string, qtype uint16) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	_, _, err := c.ExchangeContext(ctx, m, addr)
	return err == nil
}

// knotServes reports whether knotd answers authoritatively for zone (and,
// when signed, with signatures).
func knotServes(addr, zone string, signed bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	m.RecursionDesired = false
	m.SetEdns0(1232, true)
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	in, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil || in.Rcode != dns.RcodeSuccess || !in.Authoritative {
		return false
	}
	if !signed {
		return true
	}
	for _, rr := range in.Answer {
		if _, ok := rr.(*dns.RRSIG); ok {
			return true
		}
	}
	return false
}
