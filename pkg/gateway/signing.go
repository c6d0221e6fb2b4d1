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
// (smart host, MX, outbox directory) and keeps its TLS reports and Close.
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

// Deliver implements Relay.
func (s *SigningRelay) Deliver(ctx context.Context, d Delivery) []error {
	errs, _ := s.DeliverHop(ctx, d)
	return errs
}

// DeliverHop implements HopRelay; the TLS report is Next's (nil when Next
// reports none).
func (s *SigningRelay) DeliverHop(ctx context.Context, d Delivery) ([]error, *events.TLS) {
	data, err := s.Sign(d)
	if err != nil {
		err = fmt.Errorf("signing the parcel: %w", err)
		errs := make([]error, len(d.Rcpts))
		for i := range errs {
			errs[i] = err
		}
		return errs, nil
	}
	d.Data = data
	if hop, ok := s.Next.(HopRelay); ok {
		return hop.DeliverHop(ctx, d)
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
