package gateway

import (
	"context"
	"fmt"
	"io"

	"github.com/sealgate/sealgate/pkg/events"
)

// SigningRelay signs each parcel (DKIM) just before Next sends it, so the
// signature covers the exact bytes that go on the wire, after every change
// the pipeline made (S/MIME signing and encryption, the PDF carrier,
// cleaned header fields). It decorates whatever Relay serve builds
// (smart host, MX, outbox directory) and keeps its TLS reports (per hop or
// per recipient) and Close.
//
// A retry calls Deliver again and is signed again over the bytes it
// carries then; within one Deliver, a relay that resends (a pooled
// connection that broke before the final dot) resends the signed bytes.
type SigningRelay struct {
	Next Relay
	// Sign returns the bytes to send for d: d.Data signed, or d.Data as it
	// is when the message is not to be signed (a From domain not
	// configured). An error defers every recipient of the parcel (retried
	// with the queue's backoff): mail that should carry the domain's
	// signature never leaves without it.
	Sign func(d Delivery) ([]byte, error)
}

// eachHopRelay is a relay whose recipients of one parcel may leave over
// different hops (direct delivery to several domains' MX hosts): one TLS
// report per recipient.
type eachHopRelay interface {
	DeliverEach(ctx context.Context, d Delivery) ([]error, []*events.TLS)
}

// Deliver implements Relay.
func (s *SigningRelay) Deliver(ctx context.Context, d Delivery) []error {
	errs, _ := s.DeliverEach(ctx, d)
	return errs
}

// DeliverHop implements HopRelay; the TLS report is Next's (nil when Next
// reports none, or when its recipients left over different hops).
func (s *SigningRelay) DeliverHop(ctx context.Context, d Delivery) ([]error, *events.TLS) {
	errs, tlss := s.DeliverEach(ctx, d)
	var tls *events.TLS
	for i, t := range tlss {
		if i == 0 {
			tls = t
		} else if t != tls {
			return errs, nil
		}
	}
	return errs, tls
}

// DeliverEach signs d and hands it to Next, returning one error and one
// TLS report per recipient, whatever kind of relay Next is (so the queue
// records each recipient's own hop behind the decorator too).
func (s *SigningRelay) DeliverEach(ctx context.Context, d Delivery) ([]error, []*events.TLS) {
	data, err := s.Sign(d)
	if err != nil {
		return allFailed(len(d.Rcpts), fmt.Errorf("signing the parcel: %w", err)), nil
	}
	d.Data = data
	switch next := s.Next.(type) {
	case eachHopRelay:
		return next.DeliverEach(ctx, d)
	case HopRelay:
		errs, tls := next.DeliverHop(ctx, d)
		if tls == nil {
			return errs, nil
		}
		tlss := make([]*events.TLS, len(d.Rcpts))
		for i := range tlss {
			tlss[i] = tls
		}
		return errs, tlss
	}
	return s.Next.Deliver(ctx, d), nil
}

// Close closes Next if it holds anything open (the smart host pool).
func (s *SigningRelay) Close() error {
	if c, ok := s.Next.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
