package resolver

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func seedReply(f *testing.F, id uint16, qname string, qtype uint16, truncated bool, rrs ...string) {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.Id = id
	m.Response = true
	m.Truncated = truncated
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			f.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	b, err := m.Pack()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
}

// FuzzReply feeds arbitrary bytes as the resolver's reply to an MX query
// through everything this package reads of it: the reply check, the CNAME
// chase and the MX result. Whatever comes back must answer our question
// and hold only valid host names in preference order.
func FuzzReply(f *testing.F) {
	const id = 0x1234
	seedReply(f, id, "example.test.", dns.TypeMX, false, "example.test. 300 IN MX 10 mx.example.test.", "example.test. 300 IN MX 0 .")
	seedReply(f, id, "example.test.", dns.TypeMX, false, "example.test. 300 IN CNAME a.example.test.", "a.example.test. 300 IN MX 5 b.example.test.")
	seedReply(f, id, "example.test.", dns.TypeMX, true)
	seedReply(f, id+1, "example.test.", dns.TypeMX, false, "example.test. 300 IN MX 10 mx.example.test.")
	seedReply(f, id, "other.test.", dns.TypeMX, false)
	f.Add([]byte{0x12, 0x34, 0x82, 0x00})
	f.Fuzz(func(t *testing.T, wire []byte) {
		q := new(dns.Msg)
		q.SetQuestion("example.test.", dns.TypeMX)
		q.Id = id
		m, err := parseReply(q, wire)
		if err != nil {
			return
		}
		if m.Id != id || !m.Response {
			t.Fatalf("accepted a reply with ID %d response %v", m.Id, m.Response)
		}
		if !m.Truncated {
			if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, "example.test.") || m.Question[0].Qtype != dns.TypeMX {
				t.Fatalf("accepted a reply to another question: %v", m.Question)
			}
		}
		recs, end, err := chase(m.Answer, "example.test.", dns.TypeMX, map[string]bool{})
		if err != nil || len(recs) == 0 {
			return
		}
		for _, rr := range recs {
			if !strings.EqualFold(rr.Header().Name, end) || rr.Header().Rrtype != dns.TypeMX {
				t.Fatalf("record %v off the chain's end %s", rr, end)
			}
		}
		res, err := mxResult("example.test.", answer{records: recs, authentic: m.AuthenticatedData})
		if err != nil {
			return
		}
		for i, mx := range res.Hosts {
			if h, ok := hostname(mx.Host); !ok || h != mx.Host {
				t.Fatalf("invalid host %q", mx.Host)
			}
			if i > 0 && res.Hosts[i-1].Pref > mx.Pref {
				t.Fatalf("hosts not in preference order")
			}
		}
		if res.Null && len(res.Hosts) > 0 {
			t.Fatalf("null MX with hosts")
		}
	})
}

// FuzzToASCII: whatever a recipient domain holds, the name queried is a
// valid lower-case A-label host name.
func FuzzToASCII(f *testing.F) {
	for _, s := range []string{"example.org", "bücher.example", "_25._tcp.mx.example.org.", "EXAMPLE.ORG", "a..b", "\xff", "xn--bcher-kva.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := toASCII(s)
		if err != nil {
			return
		}
		h, ok := hostname(a)
		if !ok || h+"." != a {
			t.Fatalf("toASCII(%q) = %q, not a valid host name", s, a)
		}
		if _, ok := dns.IsDomainName(a); !ok {
			t.Fatalf("toASCII(%q) = %q, not a domain name", s, a)
		}
	})
}

// FuzzTXT: whatever bytes a TXT string holds on the wire, LookupTXT's
// reading (miekg/dns's escapes undone) gives exactly those bytes.
func FuzzTXT(f *testing.F) {
	for _, s := range []string{"v=DKIM1; k=rsa; p=abc", `quote" and \ backslash`, "\x00\xff\n", "\\123", "ü"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 255 {
			raw = raw[:255]
		}
		if len(raw) == 0 {
			return // miekg/dns reads one empty string as none: "" either way
		}
		// owner "." (0), type TXT, class IN, TTL 0, rdlength, one string
		rdlen := len(raw) + 1
		wire := []byte{0, 0, 16, 0, 1, 0, 0, 0, 0, byte(rdlen >> 8), byte(rdlen), byte(len(raw))}
		wire = append(wire, raw...)
		rr, _, err := dns.UnpackRR(wire, 0)
		if err != nil {
			t.Fatalf("unpack: %v", err)
		}
		txt := rr.(*dns.TXT).Txt
		if len(txt) != 1 {
			t.Fatalf("%d strings", len(txt))
		}
		if got := unescapeTXT(txt[0]); got != string(raw) {
			t.Fatalf("unescape(%q) = %q, want %q", txt[0], got, raw)
		}
	})
}
