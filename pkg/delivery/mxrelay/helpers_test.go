package mxrelay

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/delivery/resolver"
	"github.com/sealgate/sealgate/pkg/events"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/policy"
)

// stsStub stands in for the MTA-STS cache (pkg/delivery/mtasts, another
// branch): the policy a domain would have published.
type stsStub map[string][]string // domain → mx patterns (mode enforce)

func (s stsStub) Policy(_ context.Context, domain string) (string, []string, error) {
	if mx, ok := s[domain]; ok {
		return "enforce", mx, nil
	}
	return "", nil, nil
}

// mxWorld is a set of test MX hosts, one per kind, each the MX of its own
// domain ("<kind>.test" → mx.<kind>.test), in a real unbound.
type mxWorld struct {
	net      *testpeer.MXNet
	resolver string
	roots    *x509.CertPool
}

var allKinds = []testpeer.MXKind{testpeer.MXValid, testpeer.MXSelfSigned, testpeer.MXExpired, testpeer.MXWrongName,
	testpeer.MXPlain, testpeer.MXTLS10, testpeer.MXBrokenTLS}

func domainOf(k testpeer.MXKind) string { return strings.ReplaceAll(string(k), ".", "") + ".test" }

func hostOf(k testpeer.MXKind) string { return "mx." + domainOf(k) }

// startWorld starts the hosts and unbound with their MX and A records,
// plus: null.test (RFC 7505), implicit.test (no MX, an A record),
// fallback.test (MX 10 a host that is down, MX 20 the valid host).
func startWorld(t *testing.T) *mxWorld {
	t.Helper()
	var specs []testpeer.MXHostSpec
	for _, k := range allKinds {
		specs = append(specs, testpeer.MXHostSpec{Name: hostOf(k), Kind: k})
	}
	n := testpeer.StartMXHosts(t, specs...)
	var data []string
	for _, k := range allKinds {
		h := n.Hosts[hostOf(k)]
		data = append(data, domainOf(k)+". MX 10 "+hostOf(k)+".", hostOf(k)+". A "+h.IP)
	}
	valid := n.Hosts[hostOf(testpeer.MXValid)]
	// Nothing listens on .250 of the hosts' /24.
	down := valid.IP[:strings.LastIndexByte(valid.IP, '.')] + ".250"
	data = append(data,
		"null.test. MX 0 .",
		"implicit.test. A "+valid.IP,
		"fallback.test. MX 10 down.fallback.test.", "fallback.test. MX 20 "+hostOf(testpeer.MXValid)+".",
		"down.fallback.test. A "+down,
	)
	u := testpeer.StartUnbound(t, testpeer.UnboundConfig{LocalData: data})
	return &mxWorld{net: n, resolver: u.Addr, roots: rootsOf(t, n.CAFile)}
}

func rootsOf(t *testing.T, caFile string) *x509.CertPool {
	roots := x509.NewCertPool()
	roots.AddCert(testpeer.ReadCert(t, caFile))
	return roots
}

func (w *mxWorld) relay(t *testing.T) *Relay {
	t.Helper()
	r := &Relay{Resolver: newResolver(w.resolver), DANE: DANEVerifier{}, Port: w.net.Port, RootCAs: w.roots, Hostname: "gw.sealgate.test", Timeout: 10 * time.Second}
	t.Cleanup(func() { r.Close() })
	return r
}

func newResolver(addr string) Resolver {
	return FromResolver(&resolver.Resolver{Addr: addr, Timeout: 2 * time.Second})
}

func delivery(tls policy.TLSMode, rcpts ...string) gateway.Delivery {
	return gateway.Delivery{QueueID: "q1", From: "alice@example.org", Rcpts: rcpts, TLS: tls, RequireTLS: tls.AtLeast(policy.TLSRequired),
		Data: []byte("From: alice@example.org\r\nSubject: hi\r\n\r\nbody\r\n")}
}

// outcome is one recipient's result in words the tables compare.
type outcome struct {
	delivered bool
	permanent bool
	tlsVer    string // "" plain
	by        string // verified_by
	reason    string // substring of the error
}

func describeOutcome(err error, hop *events.TLS) outcome {
	if err != nil {
		return outcome{permanent: gateway.IsPermanent(err), reason: err.Error()}
	}
	o := outcome{delivered: true}
	if hop != nil {
		o.tlsVer, o.by = hop.Version, hop.VerifiedBy
	}
	return o
}
