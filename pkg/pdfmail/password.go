package pdfmail

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Password modes as written in pdf.password (tried in that order).
const (
	ModeSubject           = "subject"
	ModePreset            = "preset"
	ModeGeneratedToSender = "generated-to-sender"
	ModePortal            = "portal"
)

// DefaultSubjectTag is the tag name in "[pw:secret]".
const DefaultSubjectTag = "pw"

// DefaultPasswordLength is the length of generated passwords: 16 characters
// of a 56-letter alphabet are about 92 bits, and still dictable by phone.
const DefaultPasswordLength = 16

// DefaultMinPasswordLength is pdf.min_password_length's default: the
// shortest password a sender may write into the subject. A PDF that has
// left can be attacked offline for as long as anyone likes.
const DefaultMinPasswordLength = 10

// LeastMinPasswordLength is the lowest pdf.min_password_length accepted.
const LeastMinPasswordLength = 8

// ErrNoPassword means no configured mode produced a password for this
// recipient; the gateway then holds or bounces, per policy (fail closed).
var ErrNoPassword = errors.New("pdfmail: no PDF password for this recipient")

// ErrPasswordTooShort means the sender's subject password is shorter than
// pdf.min_password_length. The gateway holds the recipient with it as the
// reason rather than trying another mode: the sender meant that password.
// Its text never contains the password.
var ErrPasswordTooShort = errors.New("pdfmail: the PDF password in the subject is too short")

// ErrSkip is returned by a PasswordSource that has nothing for this
// recipient, so that the next source is tried.
var ErrSkip = errors.New("pdfmail: source has no password")

// PasswordStore is the part of the store this package needs (satisfied by
// *store.Store). Passwords are sealed at rest by the store.
type PasswordStore interface {
	// PDFPasswordState returns the recipient's password, its source (a
	// generated one has ModeGeneratedToSender) and whether anyone has been
	// told it; the NotFound error when there is none.
	PDFPasswordState(ctx context.Context, email string) (password []byte, source string, announced bool, err error)
	// AddPDFPassword stores password, unannounced, unless the recipient
	// has one already, atomically for every gateway node on the database,
	// and returns whether it did.
	AddPDFPassword(ctx context.Context, email string, password []byte, source string) (stored []byte, added bool, err error)
	// MarkPDFPasswordAnnounced records that password, if still the
	// recipient's, has been told to a sender.
	MarkPDFPasswordAnnounced(ctx context.Context, email string, password []byte) (marked bool, err error)
}

// Query is one (sender, recipient, subject) the gateway needs a password for.
type Query struct {
	Sender string // internal sender address (envelope or From)
	// SenderIsUser is set by the caller only after finding Sender in the
	// organisation's user directory. Only then does generated-to-sender
	// apply: anyone can write a From line, and a generated password must
	// not be mailed to (nor even be caused by) an outsider. The zero value
	// is the safe one.
	SenderIsUser bool
	Recipient    string // the external recipient address
	Subject      string // the original subject, tag still in it
	// CleanSubject is Subject without the password tag: the only form a
	// source may put into a message.
	CleanSubject string
}

// Resolution is what Passwords.For found. Its String and LogValue never
// show the password, so logging a Resolution is safe.
type Resolution struct {
	Password []byte // nil when Pending
	Mode     string // the mode that gave the password (or ModePortal when pending)
	// Subject is the subject with the password tag removed: use it for
	// everything that leaves (PDF, carrier, S/MIME copies to others).
	Subject string
	// Notification, when non-nil, is a complete RFC 5322 message to the
	// internal sender (a known user) carrying a generated password that
	// nobody has been told yet. The gateway signs it and queues it only
	// once this message's PDF copy has been accepted by the next hop, then
	// calls Announce. If this message is held, bounced or deferred instead,
	// the notice is dropped and the next message to the recipient from a
	// known user carries it.
	Notification []byte
	// Announce, non-nil exactly when Notification is, records in the store
	// that the password has been told. Two messages (or gateway nodes)
	// resolving before either announces both carry the notice, so a known
	// user may be told the same password twice; never an outsider.
	Announce func(ctx context.Context) error
	// Pending means a source (the portal) has asked the recipient to choose
	// a password; the message must wait (stay queued) until it is set.
	Pending bool
	// ChosenAt is when the recipient chose Password on the portal (zero
	// for other sources): the carrier says so.
	ChosenAt time.Time
}

// String redacts the password.
func (r Resolution) String() string {
	return fmt.Sprintf("pdfmail.Resolution{Mode:%s Pending:%t Notification:%t Password:[redacted]}", r.Mode, r.Pending, r.Notification != nil)
}

// GoString redacts the password for %#v too.
func (r Resolution) GoString() string { return r.String() }

// LogValue is for log/slog: mode and flags only.
func (r Resolution) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mode", r.Mode), slog.Bool("pending", r.Pending), slog.Bool("notification", r.Notification != nil))
}

// Found is what a PasswordSource returns when it has a password (or, with
// Pending, has started getting one).
type Found struct {
	Password     []byte
	Notification []byte
	Announce     func(ctx context.Context) error // with Notification, see Resolution
	Pending      bool
	ChosenAt     time.Time // the recipient chose Password on the portal then
}

// String redacts the password.
func (f Found) String() string {
	return fmt.Sprintf("pdfmail.Found{Pending:%t Notification:%t Password:[redacted]}", f.Pending, f.Notification != nil)
}

// GoString redacts the password for %#v too.
func (f Found) GoString() string { return f.String() }

// PasswordSource is one way to get a recipient's password. Sources are tried
// in the configured order; ErrSkip passes to the next, any other error stops
// (fail closed: a store outage must not fall through to a weaker mode).
// The portal (its own issue) is one more PasswordSource that returns
// Found{Pending: true} after inviting the recipient, and the password once
// chosen.
type PasswordSource interface {
	Mode() string
	Lookup(ctx context.Context, q Query) (Found, error)
}

// Passwords resolves the password for a recipient by trying its sources.
type Passwords struct {
	Sources []PasswordSource
	Tag     *SubjectTag // strips "[pw:…]" from subjects; nil strips nothing
}

// Resolve returns the password for q.Recipient, trying the sources in
// order. It sets q.CleanSubject itself and normalises q.Recipient.
func (p *Passwords) Resolve(ctx context.Context, q Query) (Resolution, error) {
	res := Resolution{Subject: p.CleanSubject(q.Subject)}
	q.Recipient = strings.ToLower(strings.TrimSpace(q.Recipient))
	q.CleanSubject = res.Subject
	for _, s := range p.Sources {
		f, err := s.Lookup(ctx, q)
		if errors.Is(err, ErrSkip) {
			continue
		}
		if err != nil {
			return Resolution{Subject: res.Subject}, fmt.Errorf("pdfmail: password mode %s for %s: %w", s.Mode(), q.Recipient, err)
		}
		if f.Pending {
			// The message waits: no password, and no notice for a
			// message that does not leave.
			res.Mode, res.Pending = s.Mode(), true
			return res, nil
		}
		if len(f.Password) == 0 {
			continue
		}
		// Notice and Announce only from the source whose password seals
		// the PDF.
		res.Mode, res.Password, res.Notification, res.Announce = s.Mode(), f.Password, f.Notification, f.Announce
		res.ChosenAt = f.ChosenAt
		return res, nil
	}
	return res, ErrNoPassword
}

// CleanSubject removes the password tag (if a tag is configured).
func (p *Passwords) CleanSubject(subject string) string {
	if p == nil || p.Tag == nil {
		return subject
	}
	_, clean := p.Tag.Extract(subject)
	return clean
}

// SubjectPassword returns the password written into the subject's tag,
// "" if none (or no tag is configured): the gateway makes sure it appears
// in no header field of a copy that leaves.
func (p *Passwords) SubjectPassword(subject string) string {
	if p == nil || p.Tag == nil {
		return ""
	}
	pw, _ := p.Tag.Extract(subject)
	return pw
}

// SubjectTag finds "[name:password]" in a subject, case-insensitively.
type SubjectTag struct {
	re *regexp.Regexp
}

// NewSubjectTag accepts the tag as a name ("pw") or as written in the
// subject ("[pw:]", "[pw:…]", "[pw:"), as admins tend to write it.
func NewSubjectTag(tag string) (*SubjectTag, error) {
	name := strings.TrimSpace(tag)
	name = strings.TrimPrefix(name, "[")
	name = strings.TrimSuffix(name, "]")
	name = strings.TrimSuffix(name, "…")
	name = strings.TrimSuffix(name, "...")
	name = strings.TrimSuffix(name, ":")
	if name == "" {
		name = DefaultSubjectTag
	}
	if strings.ContainsAny(name, "[]:") || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' }) {
		return nil, fmt.Errorf("pdf.subject_tag %q: use a short name such as %q (the subject then carries [%s:password])", tag, DefaultSubjectTag, DefaultSubjectTag)
	}
	return &SubjectTag{re: regexp.MustCompile(`(?i)\s*\[\s*` + regexp.QuoteMeta(name) + `\s*:([^\]]*)\]`)}, nil
}

// Extract returns the password in the first tag (trimmed; "" if none) and
// the subject with every tag removed.
func (t *SubjectTag) Extract(subject string) (password, clean string) {
	if m := t.re.FindStringSubmatch(subject); m != nil {
		password = strings.TrimSpace(m[1])
	}
	clean = strings.TrimSpace(t.re.ReplaceAllString(subject, ""))
	return password, clean
}

// SubjectSource takes the password the sender wrote into the subject.
type SubjectSource struct {
	Tag *SubjectTag
	// MinLength is pdf.min_password_length in characters; 0 means
	// DefaultMinPasswordLength. A shorter password is refused with
	// ErrPasswordTooShort, not passed over.
	MinLength int
}

// Mode implements PasswordSource.
func (SubjectSource) Mode() string { return ModeSubject }

// Lookup implements PasswordSource.
func (s SubjectSource) Lookup(_ context.Context, q Query) (Found, error) {
	pw, _ := s.Tag.Extract(q.Subject)
	if pw == "" {
		return Found{}, ErrSkip
	}
	if err := CheckPasswordLength([]byte(pw), s.MinLength); err != nil {
		return Found{}, fmt.Errorf("%w; send the message again with a longer password in the subject", err)
	}
	return Found{Password: []byte(pw)}, nil
}

// CheckPasswordLength refuses a password of fewer than minLength
// characters (0 means DefaultMinPasswordLength) with ErrPasswordTooShort.
// Neither the password nor its length goes into the error: it ends up in
// logs, the queue's hold reason and DSNs.
func CheckPasswordLength(pw []byte, minLength int) error {
	if minLength == 0 {
		minLength = DefaultMinPasswordLength
	}
	if utf8.RuneCount(pw) < minLength {
		return fmt.Errorf("%w: it needs at least %d characters (pdf.min_password_length)", ErrPasswordTooShort, minLength)
	}
	return nil
}

// PresetSource uses the password stored for the recipient (set by an admin
// with `sealgate pdf password set`, or generated earlier and announced).
type PresetSource struct {
	Store PasswordStore
	// NotFound is the store's "no such row" error (store.ErrNotFound),
	// compared with errors.Is; it makes this source skip.
	NotFound error
}

// Mode implements PasswordSource.
func (PresetSource) Mode() string { return ModePreset }

// Lookup implements PasswordSource.
func (s PresetSource) Lookup(ctx context.Context, q Query) (Found, error) {
	pw, source, announced, err := s.Store.PDFPasswordState(ctx, q.Recipient)
	if err != nil {
		if s.NotFound != nil && errors.Is(err, s.NotFound) {
			return Found{}, ErrSkip
		}
		return Found{}, fmt.Errorf("stored password: %w", err)
	}
	if len(pw) == 0 || (source == ModeGeneratedToSender && !announced) {
		// A generated password nobody has been told yet is left to
		// generated-to-sender, which uses it only with a notice to a
		// known user; sealing with it here would leave the PDF unreadable
		// for everyone, and would let a forged sender's message go out
		// under it.
		return Found{}, ErrSkip
	}
	return Found{Password: pw}, nil
}

// GeneratedSource applies only to senders who are users of the
// organisation (Query.SenderIsUser). It reuses the password stored for the
// recipient or, the first time, generates and stores one. Whenever the
// stored password is a generated one that has not been announced, the
// Found carries the notice for this message's sender and the Announce that
// marks it told.
type GeneratedSource struct {
	Store    PasswordStore
	NotFound error
	Length   int // 0 = DefaultPasswordLength
	Notifier *Notifier
	mu       sync.Mutex // one generation at a time per process; AddPDFPassword
	// keeps several gateway nodes to one password per recipient
}

// Mode implements PasswordSource.
func (*GeneratedSource) Mode() string { return ModeGeneratedToSender }

// Lookup implements PasswordSource.
func (s *GeneratedSource) Lookup(ctx context.Context, q Query) (Found, error) {
	if !q.SenderIsUser {
		// Checked before the store is touched: an outsider's message
		// neither reads, nor generates, nor stores a password.
		return Found{}, ErrSkip
	}
	if q.Sender == "" {
		return Found{}, errors.New("no sender to send the generated password to")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pw, source, announced, err := s.Store.PDFPasswordState(ctx, q.Recipient)
	switch {
	case err == nil:
		return s.reuse(q, pw, source, announced)
	case s.NotFound == nil || !errors.Is(err, s.NotFound):
		return Found{}, fmt.Errorf("stored password: %w", err)
	}
	n := s.Length
	if n == 0 {
		n = DefaultPasswordLength
	}
	pw, err = GeneratePassword(n)
	if err != nil {
		return Found{}, err
	}
	// Build the notice before storing: a template failure then leaves no
	// password stored that no notice can carry.
	note, err := s.notifier().Build(q, pw)
	if err != nil {
		return Found{}, err
	}
	if _, added, err := s.Store.AddPDFPassword(ctx, q.Recipient, pw, ModeGeneratedToSender); err != nil {
		return Found{}, fmt.Errorf("store generated password: %w", err)
	} else if added {
		return Found{Password: pw, Notification: note, Announce: s.announcer(q.Recipient, pw)}, nil
	}
	// Another node stored one first: use it, announcing it unless its own
	// message has already left and done so.
	pw, source, announced, err = s.Store.PDFPasswordState(ctx, q.Recipient)
	if err != nil {
		return Found{}, fmt.Errorf("stored password: %w", err)
	}
	return s.reuse(q, pw, source, announced)
}

// reuse is what a stored password gives this message: the password, and
// the notice when it is a generated one nobody has been told yet.
func (s *GeneratedSource) reuse(q Query, pw []byte, source string, announced bool) (Found, error) {
	if len(pw) == 0 {
		return Found{}, errors.New("stored password is empty")
	}
	if source != ModeGeneratedToSender || announced {
		return Found{Password: pw}, nil
	}
	note, err := s.notifier().Build(q, pw)
	if err != nil {
		return Found{}, err
	}
	return Found{Password: pw, Notification: note, Announce: s.announcer(q.Recipient, pw)}, nil
}

func (s *GeneratedSource) notifier() *Notifier {
	if s.Notifier == nil {
		return &Notifier{}
	}
	return s.Notifier
}

// announcer marks pw announced for recipient. A password replaced in the
// meantime is left alone (the store marks only pw), which is not an error:
// the notice told the password of the PDF it came with.
func (s *GeneratedSource) announcer(recipient string, pw []byte) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if _, err := s.Store.MarkPDFPasswordAnnounced(ctx, recipient, pw); err != nil {
			return fmt.Errorf("pdfmail: recording that the PDF password for %s was announced (the next message to %s from a user announces it again): %w", recipient, recipient, err)
		}
		return nil
	}
}

// passwordAlphabet leaves out look-alikes (0 O o 1 l I) so the password
// survives being read out on the phone.
const passwordAlphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// GeneratePassword returns n characters drawn uniformly from an alphabet
// without look-alike characters, using crypto/rand.
func GeneratePassword(n int) ([]byte, error) {
	if n < 10 {
		return nil, fmt.Errorf("pdf.password_length %d is too short: use at least 10", n)
	}
	out := make([]byte, n)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range out {
		k, err := rand.Int(rand.Reader, max)
		if err != nil {
			return nil, fmt.Errorf("generate password: %w", err)
		}
		out[i] = passwordAlphabet[k.Int64()]
	}
	return out, nil
}

// PasswordDeps are what NewPasswords wires the modes to.
type PasswordDeps struct {
	Store    PasswordStore // for preset and generated-to-sender
	NotFound error         // the store's not-found error (store.ErrNotFound)
	// SubjectTag is pdf.subject_tag ("" = "pw"). The tag is stripped from
	// subjects whatever the modes, so a sender's [pw:…] never leaves.
	SubjectTag string
	// MinLength is pdf.min_password_length, the shortest subject password
	// accepted (0 = DefaultMinPasswordLength).
	MinLength int
	Length    int       // pdf.password_length
	Notifier  *Notifier // for generated-to-sender
	// Portal is the recipient portal's source; until it exists, configuring
	// the portal mode is an error rather than a silent skip.
	Portal PasswordSource
}

// NewPasswords builds the resolver for pdf.password (modes in order).
func NewPasswords(modes []string, d PasswordDeps) (*Passwords, error) {
	tag, err := NewSubjectTag(d.SubjectTag)
	if err != nil {
		return nil, err
	}
	if len(modes) == 0 {
		return nil, errors.New("pdf.password: no mode configured; use one or more of subject, preset, generated-to-sender, portal")
	}
	if d.MinLength != 0 && d.MinLength < LeastMinPasswordLength {
		return nil, fmt.Errorf("pdf.min_password_length %d is too short: use at least %d (%d is the default)", d.MinLength, LeastMinPasswordLength, DefaultMinPasswordLength)
	}
	p := &Passwords{Tag: tag}
	seen := map[string]bool{}
	for i, m := range modes {
		if seen[m] {
			return nil, fmt.Errorf("pdf.password[%d]: mode %q is listed twice", i, m)
		}
		seen[m] = true
		switch m {
		case ModeSubject:
			p.Sources = append(p.Sources, SubjectSource{Tag: tag, MinLength: d.MinLength})
		case ModePreset, ModeGeneratedToSender:
			if d.Store == nil {
				return nil, fmt.Errorf("pdf.password[%d]: mode %q needs the store", i, m)
			}
			if m == ModePreset {
				p.Sources = append(p.Sources, PresetSource{Store: d.Store, NotFound: d.NotFound})
			} else {
				if d.Length != 0 && d.Length < 10 {
					return nil, fmt.Errorf("pdf.password_length %d is too short: use at least 10", d.Length)
				}
				p.Sources = append(p.Sources, &GeneratedSource{Store: d.Store, NotFound: d.NotFound, Length: d.Length, Notifier: d.Notifier})
			}
		case ModePortal:
			if d.Portal == nil {
				return nil, fmt.Errorf("pdf.password[%d]: the portal mode is not available in this build", i)
			}
			p.Sources = append(p.Sources, d.Portal)
		default:
			return nil, fmt.Errorf("pdf.password[%d]: unknown mode %q: use subject, preset, generated-to-sender or portal", i, m)
		}
	}
	return p, nil
}
