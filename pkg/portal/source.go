package portal

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/pkg/pdfmail"
	"github.com/sealgate/sealgate/pkg/store"
)

// PasswordSource is mode "portal" of pdf.password: the recipient's chosen
// password once there is one; before that, an invitation (once per
// recipient while its link is live) and Pending, so that the message
// waits in the queue (deferred, not held).
func (s *Server) PasswordSource() pdfmail.PasswordSource { return source{s} }

type source struct{ s *Server }

func (source) Mode() string { return pdfmail.ModePortal }

func (src source) Lookup(ctx context.Context, q pdfmail.Query) (pdfmail.Found, error) {
	s := src.s
	q.Recipient = strings.ToLower(strings.TrimSpace(q.Recipient))
	pw, from, announced, err := s.Store.PDFPasswordState(ctx, q.Recipient)
	switch {
	case err == nil && len(pw) > 0 && (from != pdfmail.ModeGeneratedToSender || announced):
		found := pdfmail.Found{Password: pw}
		if from == Source {
			// The carrier says "the password you chose on …".
			if src, at, err := s.Store.PDFPasswordSetAt(ctx, q.Recipient); err == nil && src == Source {
				found.ChosenAt = at
			}
		}
		return found, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return pdfmail.Found{}, fmt.Errorf("stored password: %w", err)
	}
	clear(pw)
	raw, hash, err := newToken()
	if err != nil {
		return pdfmail.Found{}, err
	}
	// Only a sender known as one of the organisation's users is named
	// to the recipient: anyone can write a From line.
	sender := ""
	if q.SenderIsUser {
		sender = q.Sender
	}
	now := s.Now()
	added, err := s.Store.AddPortalToken(ctx, store.PortalToken{Hash: hash, Kind: KindInvite, Email: q.Recipient,
		Sender: sender, CreatedAt: now, ExpiresAt: now.Add(s.TTL)}, true)
	if err != nil {
		return pdfmail.Found{}, fmt.Errorf("portal invitation: %w", err)
	}
	if !added {
		return pdfmail.Found{Pending: true}, nil // invited already, link still live
	}
	msg, err := s.buildMail(mailInvite, q.Recipient, sender, raw, now)
	if err == nil {
		err = s.Mailer.Send(ctx, sender, []string{q.Recipient}, msg)
	}
	if err != nil {
		// No invitation queued: drop its token so the next attempt invites.
		if derr := s.Store.DeletePortalToken(ctx, hash); derr != nil {
			s.Log.Error("portal: dropping an unsent invitation's token", "err", derr)
		}
		// The message still waits (deferred, retried with backoff), not
		// held: the next attempt invites again.
		s.Log.Error("portal: queueing an invitation", "recipient", q.Recipient, "err", err)
		return pdfmail.Found{Pending: true}, nil
	}
	s.Log.Info("portal: invitation queued", "recipient", q.Recipient)
	return pdfmail.Found{Pending: true}, nil
}
