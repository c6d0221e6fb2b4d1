package capability

import (
	"context"
	"testing"

	"github.com/sealgate/sealgate/pkg/gateway"
)

type routeFunc func(rcpt string) gateway.Route

func (f routeFunc) Route(_ context.Context, _ *gateway.MessageFacts, rcpt string, _ any, _ error) gateway.Route {
	return f(rcpt)
}

type noCerts struct{}

func (noCerts) Find(context.Context, string) (Cert, error) { return Cert{}, nil }

type canSign struct{}

func (canSign) CanSign(context.Context, string) error { return nil }

// TestTLSVerdictInAnswer: the answer's tls.verdict is the pipeline's TLS
// check verdict (Route.TLS); a check that cannot answer makes the
// recipient deferred with the check's reason, and a recipient without a
// TLS demand stays "unknown".
func TestTLSVerdictInAnswer(t *testing.T) {
	d := gateway.Decision{Rule: "r", Action: gateway.ActionDeliver, Sign: gateway.SignNever, RequireTLS: true}
	routes := map[string]gateway.Route{
		"met@v.test":        {Decision: d, Kind: gateway.RoutePlain, TLS: &gateway.TLSVerdict{Verdict: "verified"}},
		"pdf@enc.test":      {Decision: d, Kind: gateway.RouteFail, Why: "the mail servers of enc.test ...", TLS: &gateway.TLSVerdict{Verdict: "encrypted"}},
		"down@x.test":       {Decision: d, Kind: gateway.RouteDefer, Why: "the TLS check of x.test could not answer, will try again: no MX host", TLSUndecided: true},
		"opportunistic@o.t": {Decision: gateway.Decision{Rule: "o", Action: gateway.ActionDeliver, Sign: gateway.SignNever}, Kind: gateway.RoutePlain},
	}
	s := &Service{Router: routeFunc(func(r string) gateway.Route { return routes[r] }), Finder: noCerts{}, Signer: canSign{}}
	cases := []struct {
		rcpt, verdict, action string
	}{
		{"met@v.test", "verified", ""},
		{"pdf@enc.test", "encrypted", ""},
		{"down@x.test", "unknown", ActionDefer},
		{"opportunistic@o.t", "unknown", ""},
	}
	for _, c := range cases {
		a := s.Answer(context.Background(), "alice@org.test", []string{c.rcpt})[0]
		if a.TLS.Verdict != c.verdict || (c.action != "" && a.Action != c.action) {
			t.Fatalf("%s: tls %+v action %q (%s), want verdict %q action %q", c.rcpt, a.TLS, a.Action, a.Reason, c.verdict, c.action)
		}
		if c.action == ActionDefer && a.Reason != routes[c.rcpt].Why {
			t.Fatalf("%s: reason %q", c.rcpt, a.Reason)
		}
	}
}
