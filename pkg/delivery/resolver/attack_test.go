package resolver_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sealgate/sealgate/pkg/delivery/resolver"
)

// The tests in this file play a lying or broken resolver (or an off-path
// spoofer racing it): a scripted server on loopback answers with exactly
// the bytes each case needs, which no real resolver would send.

// script answers one query: the raw replies to send (over TCP only the
// first is sent; none closes the connection).
type script func(q *dns.Msg, tcp bool) [][]byte

type fakeServer struct {
	Addr string
	mu   sync.Mutex
	tcpN int // TCP queries seen
}

func startFake(t *testing.T, s script) *fakeServer {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	f := &fakeServer{Addr: pc.LocalAddr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { pc.Close(); ln.Close(); wg.Wait() })
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			for _, r := range s(q, false) {
				_, _ = pc.WriteTo(r, from)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.tcpN++
			f.mu.Unlock()
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var l uint16
				if binary.Read(c, binary.BigEndian, &l) != nil {
					return
				}
				b := make([]byte, l)
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				q := new(dns.Msg)
				if q.Unpack(b) != nil {
					return
				}
				if rs := s(q, true); len(rs) > 0 {
					_ = binary.Write(c, binary.BigEndian, uint16(len(rs[0])))
					_, _ = c.Write(rs[0])
				}
			}()
		}
	}()
	return f
}

func (f *fakeServer) tcpQueries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tcpN
}

// reply builds an answer to q with rrs (zone-file lines), AD as given.
func reply(t *testing.T, q *dns.Msg, rcode int, ad bool, rrs ...string) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	m.RecursionAvailable = true
	m.AuthenticatedData = ad
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Errorf("test RR %q: %v", s, err)
			continue
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

func pack(t *testing.T, m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		t.Errorf("pack: %v", err)
	}
	return b
}

func one(t *testing.T, m *dns.Msg) [][]byte { return [][]byte{pack(t, m)} }

func TestResolverRefusesWhatLies(t *testing.T) {
	type outcome struct {
		hosts     []string // LookupMX hosts, sorted
		authentic bool
		temp      bool
		notFound  bool
		tcp       bool // the answer needed TCP
	}
	tests := []struct {
		name   string
		domain string
		script func(t *testing.T) script
		want   outcome
	}{
		{"spoofed reply with a wrong ID is dropped, the real one used", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				spoof := reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 1 evil.attacker.test.")
				spoof.Id = q.Id + 1
				return [][]byte{pack(t, spoof), pack(t, reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 10 good.example.test."))}
			}
		}, outcome{hosts: []string{"10 good.example.test"}, authentic: true}},
		{"only spoofed replies: temporary failure", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				spoof := reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 1 evil.attacker.test.")
				spoof.Id = q.Id ^ 0x5555
				return one(t, spoof)
			}
		}, outcome{temp: true}},
		{"reply to another question is dropped", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				other := new(dns.Msg)
				other.SetQuestion("attacker.test.", dns.TypeMX)
				other.Id = q.Id
				return one(t, reply(t, other, dns.RcodeSuccess, true, "attacker.test. 300 IN MX 1 evil.attacker.test."))
			}
		}, outcome{temp: true}},
		{"reply for another type is dropped", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				m := reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN A 127.0.0.1")
				m.Question[0].Qtype = dns.TypeA
				return one(t, m)
			}
		}, outcome{temp: true}},
		{"a query echoed back (no QR bit) is dropped", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				m := reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 1 evil.attacker.test.")
				m.Response = false
				return one(t, m)
			}
		}, outcome{temp: true}},
		{"garbage is dropped", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				b := pack(t, reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 10 good.example.test."))
				return [][]byte{b[:len(b)-3], []byte("\x00\x01garbage")}
			}
		}, outcome{temp: true}},
		{"SERVFAIL is temporary, not no-MX", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte { return one(t, reply(t, q, dns.RcodeServerFailure, false)) }
		}, outcome{temp: true}},
		{"REFUSED is temporary", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte { return one(t, reply(t, q, dns.RcodeRefused, false)) }
		}, outcome{temp: true}},
		{"NXDOMAIN is not found", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte { return one(t, reply(t, q, dns.RcodeNameError, true)) }
		}, outcome{notFound: true}},
		{"truncated over UDP: the answer comes over TCP", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				if !tcp {
					m := reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 1 partial.example.test.")
					m.Truncated = true
					return one(t, m)
				}
				return one(t, reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 10 a.example.test.", "example.test. 300 IN MX 20 b.example.test."))
			}
		}, outcome{hosts: []string{"10 a.example.test", "20 b.example.test"}, authentic: true, tcp: true}},
		{"truncated and cut inside a record: TCP", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				if !tcp {
					m := reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 10 a.example.test.")
					m.Truncated = true
					b := pack(t, m)
					return [][]byte{b[:len(b)-5]}
				}
				return one(t, reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 10 a.example.test."))
			}
		}, outcome{hosts: []string{"10 a.example.test"}, authentic: true, tcp: true}},
		{"truncated and TCP fails: temporary, not the partial answer", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				if !tcp {
					m := reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 1 partial.example.test.")
					m.Truncated = true
					return one(t, m)
				}
				return nil
			}
		}, outcome{temp: true, tcp: true}},
		{"mismatched reply over TCP is an error", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				m := reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 1 x.example.test.")
				if !tcp {
					m.Truncated = true
				} else {
					m.Id++
				}
				return one(t, m)
			}
		}, outcome{temp: true, tcp: true}},
		{"records of names off the CNAME chain are ignored", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				return one(t, reply(t, q, dns.RcodeSuccess, true,
					"attacker.test. 300 IN MX 1 evil.attacker.test.",
					"example.test. 300 IN MX 10 good.example.test.",
					"www.example.test. 300 IN MX 1 evil.attacker.test."))
			}
		}, outcome{hosts: []string{"10 good.example.test"}, authentic: true}},
		{"MX hosts that are no host names are dropped", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				return one(t, reply(t, q, dns.RcodeSuccess, true,
					`example.test. 300 IN MX 1 evil\032host.example.test.`,
					`example.test. 300 IN MX 2 evil\.dot.example.test.`,
					"example.test. 300 IN MX 10 good.example.test."))
			}
		}, outcome{hosts: []string{"10 good.example.test"}, authentic: true}},
		{"only bad MX host names: temporary, not implicit MX", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				return one(t, reply(t, q, dns.RcodeSuccess, true, `example.test. 300 IN MX 1 evil\000.example.test.`))
			}
		}, outcome{temp: true}},
		{"null MX next to real hosts is ignored (RFC 7505 3)", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				return one(t, reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN MX 0 .", "example.test. 300 IN MX 10 good.example.test."))
			}
		}, outcome{hosts: []string{"10 good.example.test"}, authentic: true}},
		{"CNAME chain longer than 8 in one answer", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				rrs := []string{"example.test. 300 IN CNAME c1.example.test."}
				for i := 1; i <= 9; i++ {
					rrs = append(rrs, fmt.Sprintf("c%d.example.test. 300 IN CNAME c%d.example.test.", i, i+1))
				}
				rrs = append(rrs, "c10.example.test. 300 IN MX 10 far.example.test.")
				return one(t, reply(t, q, dns.RcodeSuccess, true, rrs...))
			}
		}, outcome{temp: true}},
		{"CNAME the resolver did not follow: asked again, AD of both", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				if strings.EqualFold(q.Question[0].Name, "example.test.") {
					return one(t, reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN CNAME alias.other.test."))
				}
				return one(t, reply(t, q, dns.RcodeSuccess, false, "alias.other.test. 300 IN MX 10 mx.other.test."))
			}
		}, outcome{hosts: []string{"10 mx.other.test"}, authentic: false}},
		{"CNAME loop across queries", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				if strings.EqualFold(q.Question[0].Name, "example.test.") {
					return one(t, reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN CNAME b.example.test."))
				}
				return one(t, reply(t, q, dns.RcodeSuccess, true, "b.example.test. 300 IN CNAME example.test."))
			}
		}, outcome{temp: true}},
		{"two CNAMEs for one name", "example.test", func(t *testing.T) script {
			return func(q *dns.Msg, tcp bool) [][]byte {
				return one(t, reply(t, q, dns.RcodeSuccess, true, "example.test. 300 IN CNAME a.example.test.", "example.test. 300 IN CNAME b.example.test.",
					"a.example.test. 300 IN MX 1 a.example.test.", "b.example.test. 300 IN MX 1 b.example.test."))
			}
		}, outcome{temp: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, tc.script(t))
			r := &resolver.Resolver{Addr: f.Addr, Timeout: 500 * time.Millisecond}
			res, err := r.LookupMX(context.Background(), tc.domain)
			var te *resolver.TempError
			switch {
			case tc.want.temp:
				if !errors.As(err, &te) || errors.Is(err, resolver.ErrNotFound) {
					t.Fatalf("LookupMX = %v, %v; want a TempError", hosts(res), err)
				}
			case tc.want.notFound:
				if !errors.Is(err, resolver.ErrNotFound) || errors.As(err, &te) {
					t.Fatalf("LookupMX = %v, %v; want ErrNotFound", hosts(res), err)
				}
			default:
				if err != nil {
					t.Fatalf("LookupMX: %v", err)
				}
				got := hosts(res)
				slices.Sort(got)
				if !slices.Equal(got, tc.want.hosts) || res.Authentic != tc.want.authentic {
					t.Fatalf("got %v authentic %v, want %v authentic %v", got, res.Authentic, tc.want.hosts, tc.want.authentic)
				}
			}
			if (f.tcpQueries() > 0) != tc.want.tcp {
				t.Fatalf("%d TCP queries, want TCP %v", f.tcpQueries(), tc.want.tcp)
			}
		})
	}
}

// TLSA: only authentic records are handed out, and no failure becomes
// "no TLSA" (which would turn DANE off).
func TestLookupTLSAFailsClosed(t *testing.T) {
	const rr = "_25._tcp.mx.example.test. 300 IN TLSA 3 1 1 0101010101010101010101010101010101010101010101010101010101010101"
	tests := []struct {
		name      string
		rcode     int
		ad        bool
		rrs       []string
		n         int
		authentic bool
		temp      bool
		notFound  bool
	}{
		{"authentic records", dns.RcodeSuccess, true, []string{rr}, 1, true, false, false},
		{"records without AD are withheld", dns.RcodeSuccess, false, []string{rr}, 0, false, false, false},
		{"SERVFAIL (bogus) is temporary", dns.RcodeServerFailure, false, nil, 0, false, true, false},
		{"authenticated denial", dns.RcodeNameError, true, nil, 0, true, false, true},
		{"unauthenticated denial", dns.RcodeSuccess, false, nil, 0, false, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, func(q *dns.Msg, tcp bool) [][]byte { return one(t, reply(t, q, tc.rcode, tc.ad, tc.rrs...)) })
			r := &resolver.Resolver{Addr: f.Addr, Timeout: 2 * time.Second}
			recs, auth, err := r.LookupTLSA(context.Background(), "mx.example.test", 25)
			var te *resolver.TempError
			if errors.As(err, &te) != tc.temp || errors.Is(err, resolver.ErrNotFound) != tc.notFound {
				t.Fatalf("err %v; want temp %v notFound %v", err, tc.temp, tc.notFound)
			}
			if len(recs) != tc.n || auth != tc.authentic {
				t.Fatalf("%d records authentic %v, want %d authentic %v", len(recs), auth, tc.n, tc.authentic)
			}
		})
	}
}

// A caller's deadline ends a query against a server that never answers.
func TestResolverHonoursContext(t *testing.T) {
	f := startFake(t, func(q *dns.Msg, tcp bool) [][]byte { return nil })
	r := &resolver.Resolver{Addr: f.Addr, Timeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err := r.LookupAddrs(ctx, "mx.example.test")
	var te *resolver.TempError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a TempError wrapping context.DeadlineExceeded", err)
	}
}

func TestResolverRefusesBadNames(t *testing.T) {
	r := &resolver.Resolver{Addr: "127.0.0.1:9"} // never asked
	for _, name := range []string{"", ".", "a..b", "ex ample.test", "exa\x00mple.test", "-bad.test", strings.Repeat("a", 64) + ".test", "evil\\.test", "\xff.test", "\uFFFD.test"} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			_, err := r.LookupMX(context.Background(), name)
			var te *resolver.TempError
			if err == nil || errors.As(err, &te) || errors.Is(err, resolver.ErrNotFound) {
				t.Fatalf("LookupMX(%q) = %v, want a plain error (bad input, not DNS)", name, err)
			}
		})
	}
}
