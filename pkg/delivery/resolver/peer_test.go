package resolver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/delivery/dane"
	"github.com/sealgate/sealgate/pkg/delivery/resolver"
)

// world is knot serving a signed, an unsigned and a tampered zone, and a
// validating unbound that trusts the signed ones; the Resolver asks unbound.
type world struct {
	r       *resolver.Resolver
	unbound *testpeer.Unbound
	pki     *testpeer.PKI
	leaf    *testpeer.Identity // mx1.secure.test, issued by pki
	other   *testpeer.Identity // a certificate nobody published
}

func startWorld(t *testing.T) *world {
	t.Helper()
	w := &world{pki: testpeer.NewPKI(t)}
	w.leaf = w.pki.IssueHost(t, testpeer.HostCertOptions{Names: []string{"mx1.secure.test"}})
	w.other = w.pki.IssueHost(t, testpeer.HostCertOptions{Names: []string{"mx1.secure.test"}})
	ee := testpeer.TLSA(t, w.leaf.CertFile, 3, 1, 1)
	ta := testpeer.TLSA(t, w.pki.InterFile, 2, 0, 1)
	var big []string
	for i := range 8 {
		big = append(big, fmt.Sprintf("big TXT \"%d-%s\"", i, strings.Repeat("x", 240)))
	}
	secure := testpeer.StartKnot(t, "secure.test", append([]string{
		"@ MX 10 mx1", "@ MX 10 mx2", "@ MX 20 mx3",
		"mx1 A 127.0.0.2", "mx1 AAAA fd00::2", "mx2 A 127.0.0.3", "mx3 A 127.0.0.4",
		"_25._tcp.mx1 TLSA " + ee, "_25._tcp.mx1 TLSA " + ta,
		"alias CNAME mx1", "alias2 CNAME alias", "dangling CNAME nowhere",
		"nomx A 127.0.0.5", "nullmx MX 0 .", "xn--bcher-kva MX 10 mx1", "v6only AAAA fd00::6",
		`sel._domainkey TXT "v=DKIM1; k=rsa; " "p=MIIBIjAN"`, `escaped TXT "a\"b\\c \195\188\009"`,
		"loop1 CNAME loop2", "loop2 CNAME loop1",
	}, big...))
	plain := testpeer.StartKnotWith(t, "plain.test", []string{
		"@ MX 10 mx1", "mx1 A 127.0.0.6", "_25._tcp.mx1 TLSA " + ee,
	}, testpeer.KnotOptions{Unsigned: true})
	tlsa := "_25._tcp.mx1 TLSA " + ee
	forged := "_25._tcp.mx1 TLSA " + testpeer.TLSA(t, w.other.CertFile, 3, 1, 1)
	broken := testpeer.StartKnotWith(t, "broken.test", []string{
		"@ MX 10 mx1", "mx1 A 127.0.0.7", tlsa,
	}, testpeer.KnotOptions{Replace: map[string]string{tlsa: forged}})
	w.unbound = testpeer.StartUnbound(t, testpeer.UnboundConfig{
		Stubs:        []testpeer.Stub{secure.Stub(), plain.Stub(), broken.Stub()},
		TrustAnchors: append(secure.DS(), broken.DS()...),
		LocalData:    []string{"local.example. MX 5 mx.local.example."},
	})
	w.r = &resolver.Resolver{Addr: w.unbound.Addr, Timeout: 10 * time.Second}
	return w
}

func isTemp(err error) bool {
	var te *resolver.TempError
	return errors.As(err, &te)
}

func hosts(res resolver.MXResult) []string {
	var out []string
	for _, mx := range res.Hosts {
		out = append(out, fmt.Sprintf("%d %s", mx.Pref, mx.Host))
	}
	return out
}

// The Resolver against real unbound validating real knot zones.
func TestResolverAgainstUnbound(t *testing.T) {
	w := startWorld(t)
	ctx := context.Background()

	t.Run("MX", func(t *testing.T) {
		tests := []struct {
			domain string
			want   resolver.MXResult
			hosts  []string // sorted within equal preference
			err    string   // "notfound" | "temp" | ""
		}{
			{"secure.test", resolver.MXResult{Authentic: true}, []string{"10 mx1.secure.test", "10 mx2.secure.test", "20 mx3.secure.test"}, ""},
			{"SECURE.test.", resolver.MXResult{Authentic: true}, []string{"10 mx1.secure.test", "10 mx2.secure.test", "20 mx3.secure.test"}, ""},
			{"bücher.secure.test", resolver.MXResult{Authentic: true}, []string{"10 mx1.secure.test"}, ""},
			{"nomx.secure.test", resolver.MXResult{Implicit: true, Authentic: true}, []string{"0 nomx.secure.test"}, ""},
			{"nullmx.secure.test", resolver.MXResult{Null: true, Authentic: true}, nil, ""},
			{"nope.secure.test", resolver.MXResult{}, nil, "notfound"},
			{"plain.test", resolver.MXResult{}, []string{"10 mx1.plain.test"}, ""},
			{"local.example", resolver.MXResult{}, []string{"5 mx.local.example"}, ""},
			{"loop1.secure.test", resolver.MXResult{}, nil, "temp"},
		}
		for _, tc := range tests {
			t.Run(tc.domain, func(t *testing.T) {
				res, err := w.r.LookupMX(ctx, tc.domain)
				switch tc.err {
				case "notfound":
					if !errors.Is(err, resolver.ErrNotFound) {
						t.Fatalf("err %v, want ErrNotFound", err)
					}
					return
				case "temp":
					if !isTemp(err) {
						t.Fatalf("err %v, want a TempError", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("LookupMX: %v\n%s", err, w.unbound.Log())
				}
				got := hosts(res)
				slices.Sort(got)
				if !slices.Equal(got, tc.hosts) || res.Null != tc.want.Null || res.Implicit != tc.want.Implicit || res.Authentic != tc.want.Authentic {
					t.Fatalf("got %v null %v implicit %v authentic %v; want %v null %v implicit %v authentic %v",
						got, res.Null, res.Implicit, res.Authentic, tc.hosts, tc.want.Null, tc.want.Implicit, tc.want.Authentic)
				}
				for i := 1; i < len(res.Hosts); i++ {
					if res.Hosts[i-1].Pref > res.Hosts[i].Pref {
						t.Fatalf("not by preference: %v", hosts(res))
					}
				}
			})
		}
	})

	t.Run("addresses", func(t *testing.T) {
		tests := []struct {
			host      string
			ips       []string
			authentic bool
			err       string
		}{
			{"mx1.secure.test", []string{"127.0.0.2", "fd00::2"}, true, ""},
			{"alias2.secure.test", []string{"127.0.0.2", "fd00::2"}, true, ""},
			{"v6only.secure.test", []string{"fd00::6"}, true, ""},
			{"mx1.plain.test", []string{"127.0.0.6"}, false, ""},
			{"mx1.broken.test", []string{"127.0.0.7"}, true, ""},
			{"dangling.secure.test", nil, false, "notfound"},
			{"nope.secure.test", nil, false, "notfound"},
		}
		for _, tc := range tests {
			t.Run(tc.host, func(t *testing.T) {
				ips, auth, err := w.r.LookupAddrs(ctx, tc.host)
				if tc.err == "notfound" {
					if !errors.Is(err, resolver.ErrNotFound) {
						t.Fatalf("err %v, want ErrNotFound", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("LookupAddrs: %v", err)
				}
				var got []string
				for _, ip := range ips {
					got = append(got, ip.String())
				}
				if !slices.Equal(got, tc.ips) || auth != tc.authentic {
					t.Fatalf("got %v authentic %v, want %v authentic %v", got, auth, tc.ips, tc.authentic)
				}
			})
		}
	})

	t.Run("canonical name", func(t *testing.T) {
		for _, tc := range []struct{ host, canonical string }{
			{"alias2.secure.test", "mx1.secure.test"},
			{"mx1.secure.test", ""},
		} {
			h, err := w.r.LookupHost(ctx, tc.host)
			if err != nil || h.Canonical != tc.canonical || !h.Authentic {
				t.Errorf("LookupHost(%s) = canonical %q authentic %v, %v; want %q", tc.host, h.Canonical, h.Authentic, err, tc.canonical)
			}
		}
	})

	t.Run("TLSA", func(t *testing.T) {
		tests := []struct {
			host      string
			n         int
			authentic bool
			err       string
		}{
			{"mx1.secure.test", 2, true, ""},
			{"mx2.secure.test", 0, true, "notfound"}, // authenticated denial: no DANE
			{"mx1.plain.test", 0, false, ""},         // insecure: records exist but are not usable
			{"mx1.broken.test", 0, false, "temp"},    // bogus: never "no DANE"
		}
		for _, tc := range tests {
			t.Run(tc.host, func(t *testing.T) {
				recs, auth, err := w.r.LookupTLSA(ctx, tc.host, 25)
				switch tc.err {
				case "notfound":
					if !errors.Is(err, resolver.ErrNotFound) || isTemp(err) {
						t.Fatalf("err %v, want ErrNotFound", err)
					}
				case "temp":
					if !isTemp(err) || errors.Is(err, resolver.ErrNotFound) {
						t.Fatalf("err %v, want a TempError", err)
					}
				default:
					if err != nil {
						t.Fatalf("LookupTLSA: %v", err)
					}
				}
				if len(recs) != tc.n || auth != tc.authentic {
					t.Fatalf("%d records authentic %v, want %d authentic %v", len(recs), auth, tc.n, tc.authentic)
				}
			})
		}
		if !w.unbound.LogContains("validation failure") {
			t.Errorf("unbound did not report the bogus TLSA as a validation failure:\n%s", w.unbound.Log())
		}
	})

	t.Run("TXT", func(t *testing.T) {
		txt, err := w.r.LookupTXT(ctx, "sel._domainkey.secure.test")
		if err != nil || !slices.Equal(txt, []string{"v=DKIM1; k=rsa; p=MIIBIjAN"}) {
			t.Fatalf("DKIM TXT = %q, %v", txt, err)
		}
		txt, err = w.r.LookupTXT(ctx, "escaped.secure.test")
		if err != nil || !slices.Equal(txt, []string{"a\"b\\c ü\t"}) {
			t.Fatalf("escaped TXT = %q, %v", txt, err)
		}
		// Eight 240-byte strings do not fit 1232 bytes of UDP: unbound
		// truncates, the Resolver asks again over TCP.
		txt, err = w.r.LookupTXT(ctx, "big.secure.test")
		if err != nil || len(txt) != 8 {
			t.Fatalf("big TXT: %d records, %v", len(txt), err)
		}
		if _, err := w.r.LookupTXT(ctx, "mx1.secure.test"); !errors.Is(err, resolver.ErrNotFound) {
			t.Fatalf("no TXT: err %v, want ErrNotFound", err)
		}
	})
}

// Signatures that expired (knot signed them, unbound finds them stale)
// make every lookup in the zone temporary: neither "no record" nor an
// unauthenticated answer.
func TestExpiredSignaturesAreTemporary(t *testing.T) {
	k := testpeer.StartKnotWith(t, "expired.test", []string{
		"@ MX 10 mx1", "mx1 A 127.0.0.2",
		"_25._tcp.mx1 TLSA 3 1 1 0101010101010101010101010101010101010101010101010101010101010101",
	}, testpeer.KnotOptions{Expired: true})
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{Stubs: []testpeer.Stub{k.Stub()}, TrustAnchors: k.DS()})
	r := &resolver.Resolver{Addr: u.Addr, Timeout: 10 * time.Second}
	ctx := context.Background()
	if res, err := r.LookupMX(ctx, "expired.test"); !isTemp(err) {
		t.Errorf("MX: %v, %v; want a TempError", hosts(res), err)
	}
	if ips, auth, err := r.LookupAddrs(ctx, "mx1.expired.test"); !isTemp(err) {
		t.Errorf("addresses: %v authentic %v, %v; want a TempError", ips, auth, err)
	}
	if recs, auth, err := r.LookupTLSA(ctx, "mx1.expired.test", 25); !isTemp(err) || len(recs) != 0 || auth {
		t.Errorf("TLSA: %v authentic %v, %v; want a TempError", recs, auth, err)
	}
	if !u.LogContains("signature expired") {
		t.Errorf("unbound did not report expired signatures:\n%s", u.Log())
	}
}

// End to end: the TLSA records knot serves, unbound validates and the
// Resolver returns decide about the chain a real TLS server (openssl
// s_server) presents.
func TestDANEEndToEnd(t *testing.T) {
	w := startWorld(t)
	ctx := context.Background()
	recs, auth, err := w.r.LookupTLSA(ctx, "mx1.secure.test", 25)
	if err != nil || !auth || len(dane.Usable(recs)) != 2 {
		t.Fatalf("TLSA: %v authentic %v, %v", recs, auth, err)
	}
	names := []string{"mx1.secure.test", "secure.test"}

	tests := []struct {
		name string
		cert *testpeer.Identity
		want dane.Reason
	}{
		{"the published certificate", w.leaf, ""},
		{"another certificate of the same CA: DANE-TA(2) accepts it", w.other, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chain := serverChain(t, tc.cert, w.pki.InterFile)
			if err := dane.Verify(recs, chain, names, time.Now()); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
	// Only the DANE-EE(3) record: the other certificate does not match.
	var ee []dane.TLSA
	for _, r := range recs {
		if r.Usage == dane.UsageDANEEE {
			ee = append(ee, r)
		}
	}
	chain := serverChain(t, w.other, w.pki.InterFile)
	var de *dane.Error
	if err := dane.Verify(ee, chain, names, time.Now()); !errors.As(err, &de) || de.Reason != dane.ReasonNoMatch {
		t.Fatalf("Verify(EE only, other cert) = %v, want %q", err, dane.ReasonNoMatch)
	}
	// A self-signed server under the same name: nothing matches.
	self := testpeer.SelfSignedHost(t, t.TempDir(), testpeer.HostCertOptions{Names: []string{"mx1.secure.test"}})
	if err := dane.Verify(recs, serverChain(t, self, ""), names, time.Now()); !errors.As(err, &de) || de.Reason != dane.ReasonNoMatch {
		t.Fatalf("Verify(self-signed) = %v, want %q", err, dane.ReasonNoMatch)
	}
}

// serverChain starts openssl s_server with the certificate (and chain
// file) and returns the chain it presents to a TLS client.
func serverChain(t *testing.T, id *testpeer.Identity, chainFile string) []*x509.Certificate {
	t.Helper()
	bin := testpeer.Require(t, "openssl")
	var addr string
	err := testpeer.OnFreePort(func(port int) error {
		addr = fmt.Sprintf("127.0.0.1:%d", port)
		args := []string{"s_server", "-accept", addr, "-cert", id.CertFile, "-key", id.KeyFile, "-quiet"}
		if chainFile != "" {
			args = append(args, "-cert_chain", chainFile)
		}
		cmd := exec.Command(bin, args...)
		out := &lockedBuilder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			return err
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		stop := func() { _ = cmd.Process.Kill(); <-done }
		for range 1000 {
			select {
			case <-done:
				return fmt.Errorf("s_server exited: %s", out.String())
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
				c.Close()
				t.Cleanup(stop)
				return nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		stop()
		return fmt.Errorf("s_server not listening on %s", addr)
	})
	if err != nil {
		t.Fatalf("openssl s_server: %v", err)
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{
		// DANE decides, not the Web PKI: the chain is checked by dane.Verify.
		InsecureSkipVerify: true, //nolint:gosec
		ServerName:         "mx1.secure.test",
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("TLS to s_server: %v", err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates
}

type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// BenchmarkLookupMX: one MX lookup through unbound (answer cached after the
// first) — the cost per lookup the relay pays when its own cache misses.
func BenchmarkLookupMX(b *testing.B) {
	k := testpeer.StartKnot(b, "bench.test", []string{"@ MX 10 mx1", "@ MX 20 mx2", "mx1 A 127.0.0.2", "mx2 A 127.0.0.3"})
	u := testpeer.StartUnbound(b, testpeer.UnboundConfig{Stubs: []testpeer.Stub{k.Stub()}, TrustAnchors: k.DS()})
	r := &resolver.Resolver{Addr: u.Addr, Timeout: 5 * time.Second}
	ctx := context.Background()
	for b.Loop() {
		res, err := r.LookupMX(ctx, "bench.test")
		if err != nil || !res.Authentic || len(res.Hosts) != 2 {
			b.Fatalf("%v %v", res, err)
		}
	}
}
