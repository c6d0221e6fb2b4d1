package pdfmail

import (
	"fmt"

	"github.com/sealgate/sealgate/pkg/config"
)

// NewSealer builds a Sealer from the [pdf] section. path resolves file
// names from the config (config.(*Config).Path); nil leaves them as given.
func NewSealer(c config.PDF, path func(string) string) (*Sealer, error) {
	if path == nil {
		path = func(p string) string { return p }
	}
	if _, err := lookupLanguage(c.Language); err != nil {
		return nil, fmt.Errorf("pdf.language: %w", err)
	}
	tmpl, err := LoadTemplates(path(c.TemplateDir))
	if err != nil {
		return nil, err
	}
	s := &Sealer{
		Language:       c.Language,
		AttachmentName: c.AttachmentName,
		AttachOriginal: c.AttachOriginal,
		Templates:      tmpl,
		HideSubject:    c.HideSubject,
	}
	if err := s.SetFonts(c, path); err != nil {
		return nil, err
	}
	if c.SubjectTag != "" {
		tag, err := NewSubjectTag(c.SubjectTag)
		if err != nil {
			return nil, err
		}
		s.CleanSubject = (&Passwords{Tag: tag}).CleanSubject
	}
	return s, nil
}

// NewPasswordsFromConfig builds the resolver for the [pdf] section; deps
// supplies the store and, later, the portal. SubjectTag and Length are
// taken from c; the notification uses the sealer's language and templates
// unless deps.Notifier is set.
func NewPasswordsFromConfig(c config.PDF, s *Sealer, deps PasswordDeps) (*Passwords, error) {
	deps.SubjectTag = c.SubjectTag
	deps.Length = c.PasswordLength
	if deps.Notifier == nil {
		deps.Notifier = &Notifier{Language: c.Language, HideSubject: c.HideSubject}
		if s != nil {
			deps.Notifier.Templates = s.Templates
		}
	}
	return NewPasswords(c.Password, deps)
}

// SetFonts builds the font chain from pdf.fonts and the deprecated
// pdf.font_file (which joins the chain right after the built-in font
// instead of replacing it); without either the Sealer keeps the built-in
// font and the system's fonts. path resolves file names as in NewSealer.
// The system directories are scanned here, once, not on each mail.
func (s *Sealer) SetFonts(c config.PDF, path func(string) string) error {
	if path == nil {
		path = func(p string) string { return p }
	}
	var entries []string
	if c.FontFile != "" {
		entries = append(entries, path(c.FontFile))
	}
	for _, f := range c.Fonts {
		entries = append(entries, path(f))
	}
	if len(entries) == 0 {
		s.chain = builtinChain()
		return nil
	}
	chain, err := buildChain(fontRegular, entries, SystemFontDirs)
	if err != nil {
		return fmt.Errorf("pdf.fonts: %w", err)
	}
	s.chain = chain
	return nil
}
