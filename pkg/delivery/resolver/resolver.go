// Package resolver is the stub resolver the MX relay, the TLS check and
// DKIM use: every query goes, with the DO bit, to one configured
// validating resolver (relay.resolver, normally unbound on loopback) and
// its AD bit is trusted as the DNSSEC verdict, as Postfix does. Nothing
// here validates signatures itself.
//
// Failures are never folded into "no record": NXDOMAIN and "no data" are
// ErrNotFound, everything else that may heal (SERVFAIL, which includes a
// DNSSEC "bogus" answer, timeouts, refused or mangled answers) is a
// *TempError the caller retries later.
package resolver

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"github.com/sealgate/sealgate/pkg/delivery/dane"
)

// DefaultTimeout bounds one query when Resolver.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// maxCNAME bounds a CNAME chain (RFC 1034 leaves it open; resolvers use
// around 8-12).
const maxCNAME = 8

// udpSize is the EDNS(0) buffer we announce (the DNS flag day 2020 value).
const udpSize = 1232

// Resolver sends queries to one validating resolver. It holds no state:
// safe for concurrent use, and the zero value asks the system's resolver.
type Resolver struct {
	Addr    string        // host:port; "" = first nameserver of /etc/resolv.conf
	Timeout time.Duration // per query; 0 = DefaultTimeout
}

// ErrNotFound is NXDOMAIN or a NOERROR answer without records of the type
// asked for. Test with errors.Is.
var ErrNotFound = errors.New("resolver: not found")

// TempError is a failure that may heal: SERVFAIL (a DNSSEC-bogus answer
// included), a timeout, a refused, malformed or mismatched answer, a
// truncated answer that TCP did not complete. Retry later; never treat it
// as "no record". Test with errors.As(err, new(*TempError)).
type TempError struct {
	Name   string // the name asked for
	Type   string // "MX", "TLSA", ...
	Reason string
	Err    error // the underlying network error, if any
}

func (e *TempError) Error() string {
	s := fmt.Sprintf("resolver: %s %s: %s", e.Name, e.Type, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *TempError) Unwrap() error { return e.Err }

// Temporary reports true: the error is worth a retry.
func (e *TempError) Temporary() bool { return true }

// MXResult is the answer to LookupMX.
type MXResult struct {
	Hosts     []*net.MX // by preference; equal preferences in random order; host names without the trailing dot
	Null      bool      // RFC 7505 null MX ("0 ."): the domain accepts no mail
	Implicit  bool      // no MX records: the domain itself is the host (RFC 5321 5.1)
	Authentic bool      // the resolver set the AD bit on every answer used
}

// LookupMX returns the mail exchangers of domain (a U-label domain is
// converted to A-labels). NXDOMAIN is ErrNotFound; a domain without MX
// records gives Implicit with the domain as its one host.
func (r *Resolver) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	name, err := toASCII(domain)
	if err != nil {
		return MXResult{}, fmt.Errorf("resolver: MX %q: %w", domain, err)
	}
	ans, err := r.lookup(ctx, name, dns.TypeMX)
	if errors.Is(err, ErrNotFound) && ans.rcode == dns.RcodeSuccess {
		// NOERROR, no MX: the domain exists and is its own mail host.
		return MXResult{Hosts: []*net.MX{{Host: trimDot(name), Pref: 0}}, Implicit: true, Authentic: ans.authentic}, nil
	}
	if err != nil {
		return MXResult{}, err
	}
	return mxResult(name, ans)
}

// mxResult turns the MX records of an answer into the result.
func mxResult(name string, ans answer) (MXResult, error) {
	res := MXResult{Authentic: ans.authentic}
	var null, bad int
	for _, rr := range ans.records {
		mx, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		if mx.Mx == "." {
			null++
			continue
		}
		host, ok := hostname(mx.Mx)
		if !ok {
			bad++
			continue
		}
		res.Hosts = append(res.Hosts, &net.MX{Host: host, Pref: mx.Preference})
	}
	switch {
	case len(res.Hosts) == 0 && null > 0:
		// "0 ." alone (RFC 7505 3): no mail. A "." next to real hosts
		// breaks RFC 7505 3 and is ignored, the hosts are used.
		return MXResult{Null: true, Authentic: ans.authentic}, nil
	case len(res.Hosts) == 0:
		return MXResult{}, &TempError{Name: trimDot(name), Type: "MX", Reason: fmt.Sprintf("%d MX records, none with a valid host name", bad)}
	}
	rand.Shuffle(len(res.Hosts), func(i, j int) { res.Hosts[i], res.Hosts[j] = res.Hosts[j], res.Hosts[i] })
	slices.SortStableFunc(res.Hosts, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	// The same host twice (a broken zone) would be tried twice.
	res.Hosts = slices.CompactFunc(res.Hosts, func(a, b *net.MX) bool { return a.Host == b.Host && a.Pref == b.Pref })
	return res, nil
}

// LookupAddrs returns host's IPv4 then IPv6 addresses (A and AAAA),
// following CNAMEs. authentic is true when every answer used carried the
// AD bit. One family failing while the other has addresses is not an
// error; both empty is ErrNotFound, unless one failed (then TempError).
func (r *Resolver) LookupAddrs(ctx context.Context, host string) (ips []net.IP, authentic bool, err error) {
	h, err := r.LookupHost(ctx, host)
	return h.IPs, h.Authentic, err
}

// HostResult is the answer to LookupHost.
type HostResult struct {
	IPs []net.IP // IPv4 first, then IPv6
	// Canonical is the end of the host's CNAME chain (without the
	// trailing dot), "" when the host is no alias. RFC 7672 2.2.2: when
	// the expansion is authentic, TLSA records are looked up at the
	// canonical name first, then at the host name.
	Canonical string
	Authentic bool // every answer used (CNAMEs included) carried the AD bit
}

// LookupHost is LookupAddrs that also reports the CNAME expansion.
func (r *Resolver) LookupHost(ctx context.Context, host string) (HostResult, error) {
	name, err := toASCII(host)
	if err != nil {
		return HostResult{}, fmt.Errorf("resolver: address of %q: %w", host, err)
	}
	type result struct {
		ans answer
		err error
	}
	var res [2]result
	var wg sync.WaitGroup
	for i, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := r.lookup(ctx, name, qtype)
			res[i] = result{a, err}
		}()
	}
	wg.Wait()
	out := HostResult{Authentic: true}
	var tempErr error
	answered := false
	for _, x := range res {
		switch {
		case x.err == nil:
			answered = true
			out.Authentic = out.Authentic && x.ans.authentic
			for _, rr := range x.ans.records {
				switch v := rr.(type) {
				case *dns.A:
					out.IPs = append(out.IPs, v.A)
				case *dns.AAAA:
					out.IPs = append(out.IPs, v.AAAA)
				}
			}
			if c := trimDot(x.ans.end); out.Canonical == "" && c != trimDot(name) {
				out.Canonical = c
			}
		case errors.Is(x.err, ErrNotFound):
			answered = true
			out.Authentic = out.Authentic && x.ans.authentic
		default:
			if tempErr == nil {
				tempErr = x.err
			}
		}
	}
	if len(out.IPs) > 0 {
		return out, nil
	}
	if tempErr != nil {
		return HostResult{}, tempErr
	}
	return HostResult{Authentic: answered && out.Authentic}, fmt.Errorf("resolver: %s A/AAAA: %w", trimDot(name), ErrNotFound)
}

// LookupTLSA returns the TLSA records of the service at host:port
// ("_25._tcp.host"). Per RFC 7672 records are only usable when authentic:
// records from an answer without the AD bit are not returned (authentic
// false, no error). NXDOMAIN or no data is ErrNotFound, with authentic
// telling whether that denial was authenticated. SERVFAIL (the answer of a
// validating resolver to a bogus TLSA RRset) is a TempError: the caller
// must not fall back to delivery without DANE.
func (r *Resolver) LookupTLSA(ctx context.Context, host string, port int) (recs []dane.TLSA, authentic bool, err error) {
	if port <= 0 || port > 65535 {
		return nil, false, fmt.Errorf("resolver: TLSA port %d out of range", port)
	}
	name, err := toASCII(host)
	if err != nil {
		return nil, false, fmt.Errorf("resolver: TLSA of %q: %w", host, err)
	}
	qname := "_" + strconv.Itoa(port) + "._tcp." + name
	ans, err := r.lookup(ctx, qname, dns.TypeTLSA)
	if err != nil {
		return nil, ans.authentic, err
	}
	if !ans.authentic {
		return nil, false, nil
	}
	for _, rr := range ans.records {
		t, ok := rr.(*dns.TLSA)
		if !ok {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			continue // unusable record (RFC 7671 5.x): skipped, like unknown types
		}
		recs = append(recs, dane.TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return recs, true, nil
}

// LookupTXT returns the TXT records of name, each record's strings
// joined (as DKIM, SPF and MTA-STS read them).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	qname, err := toASCII(name)
	if err != nil {
		return nil, fmt.Errorf("resolver: TXT %q: %w", name, err)
	}
	ans, err := r.lookup(ctx, qname, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range ans.records {
		if t, ok := rr.(*dns.TXT); ok {
			var b strings.Builder
			for _, part := range t.Txt {
				b.WriteString(unescapeTXT(part))
			}
			out = append(out, b.String())
		}
	}
	return out, nil
}

// unescapeTXT undoes the presentation escapes miekg/dns puts into TXT
// strings (\" and \\ for quote and backslash, \DDD for bytes outside
// printable ASCII), giving the record's bytes.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); v <= 255 {
				b = append(b, byte(v))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// answer is what one lookup (a CNAME chain included) produced.
type answer struct {
	records   []dns.RR // of the type asked for, owned by the end of the chain
	authentic bool     // AD on every response of the chain
	rcode     int      // of the last response
	end       string   // the name that owns records (the end of the CNAME chain)
}

// lookup asks for name/qtype and follows CNAMEs, across queries when the
// resolver's answer stops at a CNAME. err is ErrNotFound (wrapped) for
// NXDOMAIN and no data, a *TempError otherwise; ans.authentic and
// ans.rcode are set for ErrNotFound too.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (answer, error) {
	ans := answer{authentic: true}
	target := strings.ToLower(dns.Fqdn(name))
	seen := map[string]bool{}
	tname, tstr := trimDot(name), dns.TypeToString[qtype]
	for {
		msg, err := r.exchange(ctx, target, qtype)
		if err != nil {
			return answer{}, err
		}
		ans.authentic = ans.authentic && msg.AuthenticatedData
		ans.rcode = msg.Rcode
		switch msg.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		case dns.RcodeServerFailure:
			return answer{}, &TempError{Name: tname, Type: tstr, Reason: "SERVFAIL (server failure or DNSSEC validation failure)"}
		default:
			return answer{}, &TempError{Name: tname, Type: tstr, Reason: "rcode " + dns.RcodeToString[msg.Rcode]}
		}
		recs, end, err := chase(msg.Answer, target, qtype, seen)
		if err != nil {
			return answer{}, &TempError{Name: tname, Type: tstr, Reason: err.Error()}
		}
		if len(recs) > 0 {
			ans.records, ans.end = recs, end
			return ans, nil
		}
		if end == target || msg.Rcode == dns.RcodeNameError {
			// Nothing left to follow: NXDOMAIN or no data at the end.
			return ans, fmt.Errorf("resolver: %s %s: %w", tname, tstr, ErrNotFound)
		}
		// The answer stopped at a CNAME whose target it did not resolve.
		target = end
	}
}

// chase follows the CNAME chain from owner through the answer section and
// returns the records of qtype owned by the chain's end, and that end.
// Records owned by names off the chain are ignored (a resolver does not
// send them; an attacker might). seen holds the CNAME owners followed so
// far, across queries: a loop or more than maxCNAME links is an error.
func chase(rrs []dns.RR, owner string, qtype uint16, seen map[string]bool) ([]dns.RR, string, error) {
	cur := strings.ToLower(owner)
	for {
		var recs []dns.RR
		next := ""
		for _, rr := range rrs {
			h := rr.Header()
			if h.Class != dns.ClassINET || strings.ToLower(h.Name) != cur {
				continue
			}
			if h.Rrtype == qtype {
				recs = append(recs, rr)
			} else if c, ok := rr.(*dns.CNAME); ok {
				if next != "" && next != strings.ToLower(c.Target) {
					return nil, "", fmt.Errorf("%s has more than one CNAME", cur)
				}
				next = strings.ToLower(c.Target)
			}
		}
		if len(recs) > 0 {
			if next != "" {
				return nil, "", fmt.Errorf("%s has a CNAME and other data", cur)
			}
			return recs, cur, nil
		}
		if next == "" {
			return nil, cur, nil
		}
		if seen[cur] {
			return nil, "", fmt.Errorf("CNAME loop at %s", cur)
		}
		seen[cur] = true
		if len(seen) > maxCNAME {
			return nil, "", fmt.Errorf("CNAME chain longer than %d", maxCNAME)
		}
		cur = next
	}
}

// exchange sends one query and returns the validated reply: over UDP,
// then TCP when truncated.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	tname := trimDot(name)
	tstr := dns.TypeToString[qtype]
	addr, err := r.server()
	if err != nil {
		return nil, &TempError{Name: tname, Type: tstr, Reason: "no resolver", Err: err}
	}
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.AuthenticatedData = true // RFC 6840 5.7: we want the AD bit
	q.SetEdns0(udpSize, true)  // DO: the resolver validates and reports it

	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	reply, err := roundTrip(qctx, "udp", addr, q)
	if err == nil && reply.Truncated {
		reply, err = roundTrip(qctx, "tcp", addr, q)
		if err == nil && reply.Truncated {
			err = errors.New("answer truncated over TCP")
		}
		if err != nil {
			return nil, &TempError{Name: tname, Type: tstr, Reason: "truncated answer, TCP retry failed", Err: err}
		}
	}
	if err != nil {
		return nil, &TempError{Name: tname, Type: tstr, Reason: "no valid answer from " + addr, Err: err}
	}
	return reply, nil
}

// errMismatch marks a reply that is not the answer to our query.
var errMismatch = errors.New("reply does not match the query")

// roundTrip sends q to addr over network and reads the reply. Over UDP a
// reply that does not match (ID, question, not a response, unreadable)
// is dropped and the wait goes on, as an off-path spoofer could send it;
// over TCP the connection is ours, so such a reply is an error.
func roundTrip(ctx context.Context, network, addr string, q *dns.Msg) (*dns.Msg, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("deadline: %w", err)
		}
	}
	// The context may end before the deadline (a caller's cancel).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	co := &dns.Conn{Conn: conn, UDPSize: udpSize}
	if err := co.WriteMsg(q); err != nil {
		return nil, fmt.Errorf("send %s: %w", network, err)
	}
	dropped := 0
	for {
		wire, err := co.ReadMsgHeader(nil)
		if err != nil {
			// The socket deadline is the context's; its timer may fire
			// a moment after the socket gives up.
			if cerr := ctx.Err(); cerr != nil {
				err = fmt.Errorf("%w (%v)", cerr, err)
			} else if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
				err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
			}
			if dropped > 0 {
				return nil, fmt.Errorf("read %s after dropping %d mismatched replies: %w", network, dropped, err)
			}
			return nil, fmt.Errorf("read %s: %w", network, err)
		}
		reply, err := parseReply(q, wire)
		if err == nil {
			return reply, nil
		}
		if network != "udp" {
			return nil, err
		}
		dropped++
	}
}

// parseReply unpacks wire and checks that it answers q: a response, same
// ID, opcode QUERY, the same single question (names compared without
// case). A truncated reply may be cut anywhere, so only its header and
// question must parse.
func parseReply(q *dns.Msg, wire []byte) (*dns.Msg, error) {
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		// A truncated reply may be cut inside a record; Unpack has set
		// the header, which is all TCP needs to know.
		if m.Truncated && m.Response && m.Id == q.Id && m.Opcode == dns.OpcodeQuery {
			return &dns.Msg{MsgHdr: m.MsgHdr}, nil
		}
		return nil, fmt.Errorf("%w: malformed: %v", errMismatch, err)
	}
	switch {
	case !m.Response:
		return nil, fmt.Errorf("%w: not a response", errMismatch)
	case m.Id != q.Id:
		return nil, fmt.Errorf("%w: ID %d, want %d", errMismatch, m.Id, q.Id)
	case m.Opcode != dns.OpcodeQuery:
		return nil, fmt.Errorf("%w: opcode %d", errMismatch, m.Opcode)
	}
	if len(m.Question) != 1 {
		if m.Truncated && len(m.Question) == 0 {
			return m, nil
		}
		return nil, fmt.Errorf("%w: %d questions", errMismatch, len(m.Question))
	}
	got, want := m.Question[0], q.Question[0]
	if !strings.EqualFold(got.Name, want.Name) || got.Qtype != want.Qtype || got.Qclass != want.Qclass {
		return nil, fmt.Errorf("%w: question %s %s, want %s %s", errMismatch,
			got.Name, dns.TypeToString[got.Qtype], want.Name, dns.TypeToString[want.Qtype])
	}
	return m, nil
}

// server is the resolver's address: Addr, or the first nameserver of
// /etc/resolv.conf.
func (r *Resolver) server() (string, error) {
	if r.Addr == "" {
		return systemResolver()
	}
	if _, _, err := net.SplitHostPort(r.Addr); err != nil {
		return "", fmt.Errorf("resolver address %q: %w", r.Addr, err)
	}
	return r.Addr, nil
}

// systemResolver reads /etc/resolv.conf once.
var systemResolver = sync.OnceValues(func() (string, error) {
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return "", fmt.Errorf("reading /etc/resolv.conf: %w", err)
	}
	if len(cc.Servers) == 0 {
		return "", errors.New("/etc/resolv.conf names no nameserver")
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
})

// idnaProfile maps U-labels to A-labels for lookup but lets names with
// underscores through (_25._tcp, _domainkey, _mta-sts).
var idnaProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(false), idna.BidiRule())

// toASCII turns a domain (U-labels allowed, trailing dot optional) into
// a lower-case fully qualified A-label name, refusing what is not a
// host-like DNS name.
func toASCII(domain string) (string, error) {
	d := strings.TrimSuffix(strings.TrimSpace(domain), ".")
	if d == "" {
		return "", errors.New("empty domain")
	}
	// x/net/idna maps invalid UTF-8 to U+FFFD and encodes that.
	if !utf8.ValidString(d) || strings.ContainsRune(d, utf8.RuneError) {
		return "", errors.New("not a valid domain name: invalid UTF-8")
	}
	a, err := idnaProfile.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("not a valid domain name: %w", err)
	}
	a = strings.ToLower(a)
	if _, ok := hostname(a); !ok {
		return "", errors.New("not a valid domain name")
	}
	return dns.Fqdn(a), nil
}

// hostname checks a name from DNS data or input: letters, digits, hyphen
// and underscore in labels of 1 to 63 bytes, 253 bytes in all; returned
// lower case without the trailing dot. miekg/dns escapes other bytes
// ("\032"), which the backslash check refuses.
func hostname(name string) (string, bool) {
	n := strings.ToLower(trimDot(name))
	if n == "" || len(n) > 253 {
		return "", false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return n, true
}

func trimDot(s string) string { return strings.TrimSuffix(s, ".") }
