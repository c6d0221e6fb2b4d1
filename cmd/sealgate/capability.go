package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/sealgate/sealgate/pkg/api"
	"github.com/sealgate/sealgate/pkg/capability"
	"github.com/sealgate/sealgate/pkg/gateway"
	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/store"
)

// newCapabilityHandler builds the capability API from the pipeline's own
// parts: its decider and route (Pipeline.Route), its directory (same
// cache), its signer and its PDF passwords. Nil when the pipeline was not
// built by buildPipeline (tests with other parts).
func newCapabilityHandler(p *gateway.Pipeline, log *slog.Logger) *capability.Handler {
	finder, ok1 := p.Finder.(dirFinder)
	signer, ok2 := p.Signer.(*pkiSigner)
	if !ok1 || !ok2 {
		return nil
	}
	svc := &capability.Service{Router: p, Finder: capFinder{finder}, Signer: signer, Log: log}
	if ps, ok := p.PDF.(*pdfSealer); ok && ps != nil {
		svc.PDF = pdfPreview{pw: ps.pw, owner: ps.owner}
	}
	return &capability.Handler{Service: svc}
}

// registerCapability adds the capability routes to the internal mux,
// each behind the capability:read scope and, for the origins configured
// in http.cors_origins, open to browsers.
func registerCapability(mux *http.ServeMux, auth *api.Authenticator, h *capability.Handler, origins []string) {
	one := api.CORS{Origins: origins, Methods: "GET"}
	batch := api.CORS{Origins: origins, Methods: "POST"}
	mux.Handle("GET /api/v1/recipients/{address}/capability", one.Wrap(auth.Require(api.ScopeCapabilityRead, http.HandlerFunc(h.Recipient))))
	mux.Handle("OPTIONS /api/v1/recipients/{address}/capability", one.Preflight())
	mux.Handle("POST /api/v1/capability", batch.Wrap(auth.Require(api.ScopeCapabilityRead, http.HandlerFunc(h.Batch))))
	mux.Handle("OPTIONS /api/v1/capability", batch.Preflight())
}

// capFinder reads the directory as the pipeline's dirFinder does and
// keeps what the answer shows (source; the certificate stays inside).
type capFinder struct{ f dirFinder }

func (c capFinder) Find(ctx context.Context, email string) (capability.Cert, error) {
	res, err := c.f.lookup(ctx, email)
	if err != nil || !res.Found {
		return capability.Cert{}, err
	}
	return capability.Cert{Found: true, Recipient: recipientOf(res), Source: res.Chosen.Source}, nil
}

// pdfPreview previews the PDF password as pdfSealer would resolve it:
// generated-to-sender only for a sender among the organisation's users.
type pdfPreview struct {
	pw    *pdfmail.Passwords
	owner gateway.OwnerFunc
}

func (p pdfPreview) PreviewPassword(ctx context.Context, sender, rcpt string) (pdfmail.Preview, error) {
	_, isUser, err := p.owner(ctx, sender)
	if err != nil {
		return pdfmail.Preview{}, fmt.Errorf("looking up the sender: %w", err)
	}
	return p.pw.Preview(ctx, pdfmail.Query{Sender: sender, SenderIsUser: isUser, Recipient: rcpt})
}

// CanSign says whether Sign would sign as sender, without signing or
// issuing: a user of the organisation signs (a group member without a
// certificate gets one on demand, as in Sign); anyone else has no key.
func (s *pkiSigner) CanSign(ctx context.Context, sender string) error {
	if sender == "" || s.m == nil {
		return gateway.ErrNoSenderKey
	}
	primary, ok, err := s.Owner(ctx, sender)
	if err != nil {
		return err
	}
	if !ok {
		return gateway.ErrNoSenderKey
	}
	if _, err := s.currentCert(ctx, primary); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("sender certificate: %w", err)
	}
	return nil
}
