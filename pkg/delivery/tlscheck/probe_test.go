package tlscheck

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/delivery/mtasts"
	"github.com/sealgate/sealgate/pkg/delivery/resolver"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// mxHost is an SMTP server on 127.0.0.x:port that counts connections.
type mxHost struct {
	conns atomic.Int64
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

type session struct{}

func (session) Mail(string, *smtp.MailOptions) error { return nil }
func (session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (session) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (session) Reset()        {}
func (session) Logout() error { return nil }

type quiet struct{}

func (quiet) Printf(string, ...any) {}
func (quiet) Println(...any)        {}

func startMX(t *testing.T, addr string, cfg *tls.Config) (*mxHost, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	h := &mxHost{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return session{}, nil }))
	srv.Domain, srv.TLSConfig, srv.ErrorLog = "mx.test", cfg, quiet{}
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	go srv.Serve(countingListener{ln, &h.conns}) //nolint:errcheck // closed at cleanup
	t.Cleanup(func() { srv.Close() })
	return h, nil
}

// mxVariant is one kind of recipient server.
type mxVariant struct {
	ip   string
	cert func(name string) *tls.Certificate // nil: no STARTTLS
	max  uint16                             // highest TLS version (0: any)
}

// startMXHosts binds every variant on its own 127.0.0.x at one common
// port (the probe's relay.mx_port), retrying with another port if one
// is taken.
func startMXHosts(t *testing.T, variants []mxVariant) (int, map[string]*mxHost) {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		port := testpeer.FreePort(t)
		hosts := map[string]*mxHost{}
		ok := true
		for _, v := range variants {
			var cfg *tls.Config
			if v.cert != nil {
				cert := v.cert
				cfg = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: v.max,
					GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return cert(h.ServerName), nil }}
			}
			h, err := startMX(t, fmt.Sprintf("%s:%d", v.ip, port), cfg)
			if err != nil {
				ok = false
				break
			}
			hosts[v.ip] = h
		}
		if ok {
			return port, hosts
		}
	}
	t.Fatal("no common free port for the MX hosts")
	return 0, nil
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	k := make([]byte, secret.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	kr, err := secret.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), store.Options{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "sealgate.db"), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// world is the recipients' side of the Internet on loopback: unbound
// with the MX/A/TXT records, MX hosts of every kind, an MTA-STS policy
// host, all with certificates from one test CA.
type world struct {
	ca     *testpeer.TLSTestCA
	port   int
	hosts  map[string]*mxHost
	dns    *resolver.Resolver
	sts    *mtasts.Cache
	policy *http.Server
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{ca: testpeer.NewTLSTestCA(t)}
	var mu sync.Mutex
	certs := map[string]*tls.Certificate{}
	issue := func(key string, o testpeer.ServerCertOptions) *tls.Certificate {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := certs[key]; ok {
			return c
		}
		c := w.ca.ServerCert(t, o)
		certs[key] = &c
		return &c
	}
	valid := func(name string) *tls.Certificate {
		return issue("valid "+name, testpeer.ServerCertOptions{Names: []string{name}})
	}
	w.port, w.hosts = startMXHosts(t, []mxVariant{
		{ip: "127.0.0.2", cert: valid},
		{ip: "127.0.0.3", cert: func(name string) *tls.Certificate {
			return issue("self", testpeer.ServerCertOptions{Names: []string{name}, SelfSigned: true})
		}},
		{ip: "127.0.0.4", cert: func(name string) *tls.Certificate {
			return issue("expired", testpeer.ServerCertOptions{Names: []string{name}, Expired: true})
		}},
		{ip: "127.0.0.5", cert: func(string) *tls.Certificate {
			return issue("wrong", testpeer.ServerCertOptions{Names: []string{"someone-else.test"}})
		}},
		{ip: "127.0.0.6"},
		{ip: "127.0.0.7", cert: valid, max: tls.VersionTLS10},
	})

	// The MTA-STS policy host.
	pln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return valid(h.ServerName), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	policies := map[string]string{
		"mta-sts.sts-ok.test":    "version: STSv1\nmode: enforce\nmx: *.sts-ok.test\nmax_age: 86400\n",
		"mta-sts.sts-other.test": "version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n",
	}
	w.policy = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		body, ok := policies[host]
		if !ok {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(rw, body)
	})}
	go w.policy.Serve(pln) //nolint:errcheck // closed at cleanup
	t.Cleanup(func() { w.policy.Close() })
	policyPort := pln.Addr().(*net.TCPAddr).Port

	// DANE: zones knot signs, one TLSA matching the served certificate
	// (DANE-EE, SHA-256 of the key), one not; and TLSA records in
	// unbound's unsigned local data, which must not count.
	spki := sha256.Sum256(valid("mx.dane.test").Leaf.RawSubjectPublicKeyInfo)
	tlsa := func(host, hash string) string { return fmt.Sprintf("_%d._tcp.%s TLSA 3 1 1 %s", w.port, host, hash) }
	good := testpeer.StartKnot(t, "dane.test", []string{"@ MX 10 mx", "mx A 127.0.0.2", tlsa("mx", hex.EncodeToString(spki[:]))})
	bad := testpeer.StartKnot(t, "danebad.test", []string{"@ MX 10 mx", "mx A 127.0.0.2", tlsa("mx", strings.Repeat("ab", 32))})
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{Stubs: []testpeer.Stub{good.Stub(), bad.Stub()},
		TrustAnchors: append(good.DS(), bad.DS()...), LocalData: []string{
			"viainsecure.test. MX 10 mx.dane.test.",
			"daneinsecure.test. MX 10 mx.daneinsecure.test.", "mx.daneinsecure.test. A 127.0.0.5",
			tlsa("mx.daneinsecure.test.", strings.Repeat("cd", 32)),
			"valid.test. MX 10 mx.valid.test.", "mx.valid.test. A 127.0.0.2",
			"selfsigned.test. MX 10 mx.selfsigned.test.", "mx.selfsigned.test. A 127.0.0.3",
			"expired.test. MX 10 mx.expired.test.", "mx.expired.test. A 127.0.0.4",
			"wrongname.test. MX 10 mx.wrongname.test.", "mx.wrongname.test. A 127.0.0.5",
			"plain.test. MX 10 mx.plain.test.", "mx.plain.test. A 127.0.0.6",
			"tls10.test. MX 10 mx.tls10.test.", "mx.tls10.test. A 127.0.0.7",
			"mixed.test. MX 10 mx.valid.test.", "mixed.test. MX 20 mx.selfsigned.test.",
			"partly.test. MX 10 mx.valid.test.", "partly.test. MX 20 mx.dead.test.", "mx.dead.test. A 127.0.0.9",
			"dead.test. MX 10 mx.dead.test.",
			"null.test. MX 0 .",
			"sts-ok.test. MX 10 mx.sts-ok.test.", "mx.sts-ok.test. A 127.0.0.2",
			`_mta-sts.sts-ok.test. TXT "v=STSv1; id=1"`, "mta-sts.sts-ok.test. A 127.0.0.1",
			"sts-other.test. MX 10 mx.sts-other.test.", "mx.sts-other.test. A 127.0.0.2",
			`_mta-sts.sts-other.test. TXT "v=STSv1; id=1"`, "mta-sts.sts-other.test. A 127.0.0.1",
		}})
	w.dns = &resolver.Resolver{Addr: u.Addr, Timeout: 5 * time.Second}
	w.sts = &mtasts.Cache{TXT: w.dns, Store: openStore(t), Fetch: &mtasts.Fetcher{Roots: w.ca.Pool, Port: policyPort, Timeout: 5 * time.Second,
		Resolve: func(ctx context.Context, host string) ([]net.IP, error) {
			ips, _, err := w.dns.LookupAddrs(ctx, host)
			return ips, err
		}}}
	return w
}

func (w *world) prober() *Prober {
	dns, dn := FromResolver(w.dns)
	return &Prober{DNS: dns, DANE: dn, STS: w.sts, Roots: w.ca.Pool, Port: w.port, Hostname: "sealgate.test", Timeout: 10 * time.Second}
}

// TestCheck probes every kind of recipient server and checks the facts
// and the verdict, the attacker's servers included: a self-signed,
// expired or wrong-name certificate is encrypted at best, a server
// without STARTTLS or with TLS 1.0 only is insecure, and a valid
// certificate on a host an enforced MTA-STS policy does not name is not
// verified. DANE: a TLSA record in a signed zone that matches makes the
// host verified, one that does not makes it insecure (delivery would
// fail), and TLSA records the resolver cannot authenticate count for
// nothing — nor do authentic ones of a host an unauthenticated MX answer
// named (viainsecure.test: only PKIX makes it verified).
func TestCheck(t *testing.T) {
	w := newWorld(t)
	p := w.prober()
	type cert = Certificate
	cases := []struct {
		domain  string
		verdict string
		host    Host // compared: StartTLS, Certificate, MTASTS, Verdict; TLSVersion when set
		err     error
	}{
		{"valid.test", Verified, Host{StartTLS: true, Certificate: &cert{Valid: true, ChainComplete: true, NameMatch: true}, MTASTS: STS{Mode: "none"}, Verdict: Verified}, nil},
		{"selfsigned.test", Encrypted, Host{StartTLS: true, Certificate: &cert{SelfSigned: true, NameMatch: true}, MTASTS: STS{Mode: "none"}, Verdict: Encrypted}, nil},
		{"expired.test", Encrypted, Host{StartTLS: true, Certificate: &cert{Expired: true, ChainComplete: true, NameMatch: true}, MTASTS: STS{Mode: "none"}, Verdict: Encrypted}, nil},
		{"wrongname.test", Encrypted, Host{StartTLS: true, Certificate: &cert{ChainComplete: true}, MTASTS: STS{Mode: "none"}, Verdict: Encrypted}, nil},
		{"plain.test", Insecure, Host{MTASTS: STS{Mode: "none"}, Verdict: Insecure}, nil},
		{"tls10.test", Insecure, Host{StartTLS: true, TLSVersion: "TLS 1.0", Certificate: &cert{Valid: true, ChainComplete: true, NameMatch: true}, MTASTS: STS{Mode: "none"}, Verdict: Insecure}, nil},
		{"sts-ok.test", Verified, Host{StartTLS: true, Certificate: &cert{Valid: true, ChainComplete: true, NameMatch: true}, MTASTS: STS{Mode: "enforce", Match: true}, Verdict: Verified}, nil},
		{"sts-other.test", Encrypted, Host{StartTLS: true, Certificate: &cert{Valid: true, ChainComplete: true, NameMatch: true}, MTASTS: STS{Mode: "enforce"}, Verdict: Encrypted}, nil},
		{"mixed.test", Encrypted, Host{StartTLS: true, Certificate: &cert{Valid: true, ChainComplete: true, NameMatch: true}, MTASTS: STS{Mode: "none"}, Verdict: Verified}, nil},
		{"partly.test", Verified, Host{StartTLS: true, Certificate: &cert{Valid: true, ChainComplete: true, NameMatch: true}, MTASTS: STS{Mode: "none"}, Verdict: Verified}, nil},
		{"dane.test", Verified, Host{StartTLS: true, Certificate: &cert{Valid: true, ChainComplete: true, NameMatch: true}, DANE: DANEMatch, MTASTS: STS{Mode: "none"}, Verdict: Verified}, nil},
		{"danebad.test", Insecure, Host{StartTLS: true, Certificate: &cert{Valid: true, ChainComplete: true, NameMatch: true}, DANE: DANEMismatch, MTASTS: STS{Mode: "none"}, Verdict: Insecure}, nil},
		{"viainsecure.test", Verified, Host{StartTLS: true, Certificate: &cert{Valid: true, ChainComplete: true, NameMatch: true}, DANE: DANEInsecureDNS, MTASTS: STS{Mode: "none"}, Verdict: Verified}, nil},
		{"daneinsecure.test", Encrypted, Host{StartTLS: true, Certificate: &cert{ChainComplete: true}, DANE: DANEInsecureDNS, MTASTS: STS{Mode: "none"}, Verdict: Encrypted}, nil},
		{"null.test", Insecure, Host{}, nil},
		{"dead.test", "", Host{}, ErrUnreachable},
	}
	for _, c := range cases {
		t.Run(c.domain, func(t *testing.T) {
			r, err := p.Check(context.Background(), c.domain)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("Check = %+v, %v; want %v", r, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != c.verdict {
				t.Fatalf("verdict %q, want %q (%s)\n%+v", r.Verdict, c.verdict, r.Reason, r.MX)
			}
			if c.host.Verdict == "" {
				return
			}
			// (DANE "" below: unbound's local data is unsigned, so
			// insecure-dns.)
			got := r.MX[0]
			if got.StartTLS != c.host.StartTLS || got.MTASTS != c.host.MTASTS || got.Verdict != c.host.Verdict ||
				(c.host.Certificate == nil) != (got.Certificate == nil) ||
				(c.host.Certificate != nil && *got.Certificate != *c.host.Certificate) ||
				(c.host.TLSVersion != "" && got.TLSVersion != c.host.TLSVersion) ||
				(c.host.DANE != "" && got.DANE != c.host.DANE) || (c.host.DANE == "" && got.DANE != DANEInsecureDNS) {
				t.Fatalf("first host:\n got %+v cert %+v\nwant %+v cert %+v", got, got.Certificate, c.host, c.host.Certificate)
			}
			if got.StartTLS && got.Verdict != Insecure && (got.TLSVersion == "" || got.Cipher == "") {
				t.Fatalf("TLS version/cipher not recorded: %+v", got)
			}
		})
	}
}

// TestCacheProbesOncePerTTL counts connections at the MX host: many
// concurrent and later lookups within the TTL cost one probe, a second
// node on the same store none, and a lookup after the TTL one more.
func TestCacheProbesOncePerTTL(t *testing.T) {
	w := newWorld(t)
	st := openStore(t)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	c := &Cache{Checker: w.prober(), Store: st, TTL: time.Hour, Now: clock}
	mx := w.hosts["127.0.0.2"]
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := c.Report(context.Background(), "valid.test"); err != nil || r.Verdict != Verified {
				t.Errorf("Report = %+v, %v", r, err)
			}
		}()
	}
	wg.Wait()
	steps := []struct {
		name  string
		cache *Cache
		later time.Duration
		want  int64
	}{
		{"eight concurrent lookups", nil, 0, 1},
		{"again within the TTL", c, 30 * time.Minute, 1},
		{"another node, same store", &Cache{Checker: w.prober(), Store: st, TTL: time.Hour, Now: clock}, 0, 1},
		{"after the TTL", c, 31 * time.Minute, 2},
	}
	for _, s := range steps {
		now = now.Add(s.later)
		if s.cache != nil {
			if r, err := s.cache.Report(context.Background(), "VALID.test."); err != nil || r.Verdict != Verified {
				t.Fatalf("%s: Report = %+v, %v", s.name, r, err)
			}
		}
		if n := mx.conns.Load(); n != s.want {
			t.Fatalf("%s: %d connections at the MX host, want %d", s.name, n, s.want)
		}
	}
	// A failed probe is not cached: each lookup tries again.
	for i := 0; i < 2; i++ {
		if _, err := c.Report(context.Background(), "dead.test"); !errors.Is(err, ErrUnreachable) {
			t.Fatalf("dead.test: %v", err)
		}
	}
}

// countingChecker answers every domain as encrypted and counts the probes.
type countingChecker struct{ probes map[string]int }

func (c *countingChecker) Check(_ context.Context, domain string) (Report, error) {
	c.probes[domain]++
	return Report{Domain: domain, Verdict: Encrypted}, nil
}

// An attacker who sends mail to a great many made-up domains must not grow
// the memory copy without bound; the newest report is always kept.
func TestCacheMemoryBounded(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	ck := &countingChecker{probes: map[string]int{}}
	c := &Cache{Checker: ck, TTL: time.Hour, MaxEntries: 3, Now: func() time.Time { return now }}
	for i := 0; i < 100; i++ {
		d := fmt.Sprintf("d%d.test", i)
		if _, err := c.Report(context.Background(), d); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if n := len(c.mem); n > 3 {
			t.Fatalf("after %d domains the memory copy holds %d reports, want at most 3", i+1, n)
		}
		if _, ok := c.mem[d]; !ok {
			t.Fatalf("%s not kept after its probe", d)
		}
	}
	// Expired reports make room before live ones.
	c = &Cache{Checker: ck, TTL: time.Hour, MaxEntries: 2, Now: func() time.Time { return now }}
	for _, d := range []string{"old.test", "live.test"} {
		if _, err := c.Report(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		now = now.Add(40 * time.Minute)
	}
	if _, err := c.Report(context.Background(), "new.test"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.mem["live.test"]; !ok {
		t.Fatalf("a live report was dropped while an expired one could go: %v", c.mem)
	}
	if _, ok := c.mem["old.test"]; ok {
		t.Fatal("the expired report was kept")
	}
}
