package pdfmail

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Preview is where a recipient's PDF password would come from for a
// query, as Resolve would find it, without anything happening.
type Preview struct {
	// Mode is the mode that would give the password (ModeSubject,
	// ModePreset, ModeGeneratedToSender, ModePortal), "" when none would
	// (the gateway then holds or bounces).
	Mode string
	// Stored is the source of the password stored for the recipient
	// ("" when none is stored or the mode does not use it): a preset
	// password may have been generated earlier, or chosen in the portal.
	Stored string
	// Subject says the subject mode comes before the answer and the
	// query's subject carries no password: a password tag in the subject
	// would give the password.
	Subject bool
}

// Preview answers which source would give q.Recipient's password, in the
// configured order, read-only: no password is generated or stored, no
// notice built, nobody invited, and the password itself is not returned.
// A source it does not know (one added later) is reported by its mode,
// as a source that would be asked.
func (p *Passwords) Preview(ctx context.Context, q Query) (Preview, error) {
	q.Recipient = strings.ToLower(strings.TrimSpace(q.Recipient))
	subject := false
	for _, s := range p.Sources {
		pv, err := previewSource(ctx, s, q)
		if errors.Is(err, ErrSkip) {
			_, isSubject := s.(SubjectSource)
			subject = subject || isSubject
			continue
		}
		if err != nil {
			return Preview{}, fmt.Errorf("pdfmail: password mode %s: %w", s.Mode(), err)
		}
		pv.Subject = subject
		return pv, nil
	}
	return Preview{Subject: subject}, nil
}

func previewSource(ctx context.Context, s PasswordSource, q Query) (Preview, error) {
	switch s := s.(type) {
	case SubjectSource:
		if pw, _ := s.Tag.Extract(q.Subject); pw == "" {
			return Preview{}, ErrSkip
		}
		return Preview{Mode: ModeSubject}, nil
	case PresetSource:
		source, announced, err := storedState(ctx, s.Store, s.NotFound, q.Recipient)
		if err != nil {
			return Preview{}, err
		}
		if source == ModeGeneratedToSender && !announced {
			return Preview{}, ErrSkip // left to generated-to-sender, as in Lookup
		}
		return Preview{Mode: ModePreset, Stored: source}, nil
	case *GeneratedSource:
		if !q.SenderIsUser {
			return Preview{}, ErrSkip
		}
		source, _, err := storedState(ctx, s.Store, s.NotFound, q.Recipient)
		if errors.Is(err, ErrSkip) {
			return Preview{Mode: ModeGeneratedToSender}, nil // would be generated
		}
		if err != nil {
			return Preview{}, err
		}
		return Preview{Mode: ModeGeneratedToSender, Stored: source}, nil
	}
	return Preview{Mode: s.Mode()}, nil
}

// storedState reads what is stored for recipient: ErrSkip when nothing
// (or an empty password) is. The password is wiped at once.
func storedState(ctx context.Context, st PasswordStore, notFound error, recipient string) (source string, announced bool, err error) {
	pw, source, announced, err := st.PDFPasswordState(ctx, recipient)
	defer clear(pw)
	switch {
	case err != nil && notFound != nil && errors.Is(err, notFound):
		return "", false, ErrSkip
	case err != nil:
		return "", false, fmt.Errorf("stored password: %w", err)
	case len(pw) == 0:
		return "", false, ErrSkip
	}
	return source, announced, nil
}
