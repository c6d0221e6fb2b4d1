package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sealgate/sealgate/pkg/events"
)

type sigNextRelay struct {
	got    []Delivery
	tls    *events.TLS
	closed bool
}

func (r *sigNextRelay) Deliver(_ context.Context, d Delivery) []error {
	r.got = append(r.got, d)
	return make([]error, len(d.Rcpts))
}

type sigNextHop struct{ sigNextRelay }

func (r *sigNextHop) DeliverHop(ctx context.Context, d Delivery) ([]error, *events.TLS) {
	return r.Deliver(ctx, d), r.tls
}

func (r *sigNextHop) Close() error { r.closed = true; return nil }

// sigNextEach reports one TLS per recipient (direct delivery).
type sigNextEach struct{ sigNextRelay }

func (r *sigNextEach) DeliverEach(ctx context.Context, d Delivery) ([]error, []*events.TLS) {
	errs := r.Deliver(ctx, d)
	tlss := make([]*events.TLS, len(d.Rcpts))
	for i := range tlss {
		tlss[i] = &events.TLS{Version: fmt.Sprintf("hop %d", i)}
	}
	return errs, tlss
}

func TestSigningRelay(t *testing.T) {
	d := Delivery{QueueID: "q1", Rcpts: []string{"a@x.test", "b@x.test"}, Data: []byte("From: a@example.org\r\n\r\nbody\r\n")}
	sign := func(d Delivery) ([]byte, error) { return append([]byte("DKIM-Signature: v=1\r\n"), d.Data...), nil }
	tls := &events.TLS{Version: "TLS 1.3"}
	tests := []struct {
		name     string
		next     Relay
		sign     func(Delivery) ([]byte, error)
		wantSent []byte // nil: nothing reaches next
		wantTLS  *events.TLS
	}{
		{name: "signed bytes reach a hop relay, its TLS report comes back", next: &sigNextHop{sigNextRelay{tls: tls}}, sign: sign,
			wantSent: append([]byte("DKIM-Signature: v=1\r\n"), d.Data...), wantTLS: tls},
		{name: "plain relay (outbox) gets the signed bytes", next: &sigNextRelay{}, sign: sign,
			wantSent: append([]byte("DKIM-Signature: v=1\r\n"), d.Data...)},
		{name: "unsigned passes as it is", next: &sigNextRelay{}, sign: func(d Delivery) ([]byte, error) { return d.Data, nil },
			wantSent: d.Data},
		{name: "a signing error sends nothing and defers every recipient", next: &sigNextHop{}, sign: func(Delivery) ([]byte, error) {
			return nil, errors.New("dkim: broken key")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &SigningRelay{Next: tc.next, Sign: tc.sign}
			errs, gotTLS := s.DeliverHop(context.Background(), d)
			var got []Delivery
			switch n := tc.next.(type) {
			case *sigNextHop:
				got = n.got
			case *sigNextRelay:
				got = n.got
			}
			if tc.wantSent == nil {
				if len(got) != 0 {
					t.Fatal("a parcel that could not be signed was sent")
				}
				if len(errs) != len(d.Rcpts) {
					t.Fatalf("%d errors for %d recipients", len(errs), len(d.Rcpts))
				}
				for _, e := range errs {
					if e == nil || IsPermanent(e) {
						t.Fatalf("error %v: want a temporary failure (retried)", e)
					}
				}
				return
			}
			if len(got) != 1 || !bytes.Equal(got[0].Data, tc.wantSent) || got[0].QueueID != "q1" {
				t.Fatalf("sent %+v", got)
			}
			if gotTLS != tc.wantTLS {
				t.Errorf("TLS %v, want %v", gotTLS, tc.wantTLS)
			}
			for _, e := range errs {
				if e != nil {
					t.Fatal(e)
				}
			}
		})
	}
	hop := &sigNextHop{}
	if err := (&SigningRelay{Next: hop, Sign: sign}).Close(); err != nil || !hop.closed {
		t.Fatal("Close did not reach the inner relay (the smart host pool would stay open)")
	}
	if err := (&SigningRelay{Next: &sigNextRelay{}, Sign: sign}).Close(); err != nil {
		t.Fatal(err)
	}
	// Per-recipient hops pass through, with the signed bytes.
	each := &sigNextEach{}
	s := &SigningRelay{Next: each, Sign: sign}
	errs, tlss := s.DeliverEach(context.Background(), d)
	if len(errs) != 2 || errs[0] != nil || len(tlss) != 2 || tlss[1].Version != "hop 1" || !bytes.HasPrefix(each.got[0].Data, []byte("DKIM-Signature:")) {
		t.Fatalf("DeliverEach: %v %v %+v", errs, tlss, each.got)
	}
	if _, tls := s.DeliverHop(context.Background(), d); tls != nil {
		t.Errorf("two recipients over two hops reported as one hop %v", tls)
	}
	// A hop relay's one report becomes each recipient's.
	hop2 := &sigNextHop{sigNextRelay{tls: tls}}
	if _, tlss := (&SigningRelay{Next: hop2, Sign: sign}).DeliverEach(context.Background(), d); len(tlss) != 2 || tlss[0] != tls || tlss[1] != tls {
		t.Errorf("hop TLS per recipient: %v", tlss)
	}
	if !bytes.HasPrefix(d.Data, []byte("From:")) {
		t.Fatal("the caller's parcel was changed in place")
	}
}
