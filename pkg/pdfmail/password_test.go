package pdfmail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-message/mail"
)

// memStore is an in-memory PasswordStore for the resolver's logic; the
// real stores (SQLite, PostgreSQL) are exercised in
// store_integration_test.go. It counts calls so that a test can show a
// source did not touch the store at all.
type memStore struct {
	mu       sync.Mutex
	rows     map[string]memRow
	reads    int
	adds     int
	failGet  error
	failSet  error
	failMark error
}

type memRow struct {
	pw        []byte
	source    string
	announced bool
}

var errMemNotFound = errors.New("mem: not found")

func newMemStore() *memStore { return &memStore{rows: map[string]memRow{}} }

// preset stores a password as `sealgate pdf password set` does.
func (m *memStore) preset(email, pw string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows[email] = memRow{pw: []byte(pw), source: ModePreset, announced: true}
}

func (m *memStore) row(email string) (memRow, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[email]
	return r, ok
}

func (m *memStore) PDFPasswordState(_ context.Context, email string) ([]byte, string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.failGet != nil {
		return nil, "", false, m.failGet
	}
	r, ok := m.rows[email]
	if !ok {
		return nil, "", false, fmt.Errorf("pdf password for %s: %w", email, errMemNotFound)
	}
	return r.pw, r.source, r.announced, nil
}

func (m *memStore) AddPDFPassword(_ context.Context, email string, pw []byte, source string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adds++
	if m.failSet != nil {
		return nil, false, m.failSet
	}
	if r, ok := m.rows[email]; ok {
		return r.pw, false, nil
	}
	m.rows[email] = memRow{pw: bytes.Clone(pw), source: source}
	return pw, true, nil
}

func (m *memStore) MarkPDFPasswordAnnounced(_ context.Context, email string, pw []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failMark != nil {
		return false, m.failMark
	}
	r, ok := m.rows[email]
	if !ok || !bytes.Equal(r.pw, pw) {
		return false, nil
	}
	r.announced = true
	m.rows[email] = r
	return true, nil
}

func TestSubjectTag(t *testing.T) {
	tests := []struct {
		tag, subject, wantPW, wantClean string
	}{
		{"[pw:", "Vertrag [pw:geheim]", "geheim", "Vertrag"},
		{"pw", "[PW: Sommer 2026! ] Angebot", "Sommer 2026!", "Angebot"},
		{"[pw:]", "A [pw:eins] B [pw:zwei] C", "eins", "A B C"},
		{"[pw:…]", "no tag here", "", "no tag here"},
		{"kennwort", "Re: Akte [kennwort:Äpfel€] 42", "Äpfel€", "Re: Akte 42"},
		{"pw", "empty [pw:] tag", "", "empty tag"},
		{"pw", "[pw:unclosed", "", "[pw:unclosed"},
		{"", "default [pw:x1]", "x1", "default"},
	}
	for _, tc := range tests {
		t.Run(tc.tag+" "+tc.subject, func(t *testing.T) {
			tag, err := NewSubjectTag(tc.tag)
			if err != nil {
				t.Fatal(err)
			}
			pw, clean := tag.Extract(tc.subject)
			if pw != tc.wantPW || clean != tc.wantClean {
				t.Errorf("Extract(%q) = %q, %q; want %q, %q", tc.subject, pw, clean, tc.wantPW, tc.wantClean)
			}
		})
	}
	if _, err := NewSubjectTag("p w"); err == nil {
		t.Error("tag with a space accepted")
	}
}

func TestPasswordsForTriesModesInOrder(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	st.preset("preset@partner.example", "preset-pw-123")
	p, err := NewPasswords([]string{"subject", "preset", "generated-to-sender"}, PasswordDeps{
		Store: st, NotFound: errMemNotFound, SubjectTag: "[pw:", Length: 20,
		Notifier: &Notifier{Language: "de", Hostname: "gw.example.org"},
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, recipient, subject string
		wantMode, wantSubject    string
		wantPW                   string // "" = generated
		wantNote                 bool
		leaves                   bool // the message leaves: the gateway calls Announce
	}{
		{"subject wins", "preset@partner.example", "Akte [pw:aus-dem-Betreff]", ModeSubject, "Akte", "aus-dem-Betreff", false, true},
		{"preset when no tag", "Preset@Partner.example", "Akte", ModePreset, "Akte", "preset-pw-123", false, true},
		{"generated for a new recipient", "new@partner.example", "Erstkontakt", ModeGeneratedToSender, "Erstkontakt", "", true, true},
		// Stored and announced now: preset finds it, no second notice.
		{"generated is reused", "new@partner.example", "Zweite Mail", ModePreset, "Zweite Mail", "", false, true},
	}
	var generated []byte
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.Resolve(ctx, Query{Sender: "alice@example.org", SenderIsUser: true, Recipient: tc.recipient, Subject: tc.subject})
			if err != nil {
				t.Fatal(err)
			}
			if res.Mode != tc.wantMode || res.Subject != tc.wantSubject || (res.Notification != nil) != tc.wantNote || (res.Announce != nil) != tc.wantNote {
				t.Errorf("got %v subject %q, want mode %s subject %q notification %t", res, res.Subject, tc.wantMode, tc.wantSubject, tc.wantNote)
			}
			switch {
			case tc.wantPW != "" && string(res.Password) != tc.wantPW:
				t.Errorf("password %q, want %q", res.Password, tc.wantPW)
			case tc.wantPW == "" && generated == nil:
				generated = res.Password
				if len(generated) != 20 {
					t.Errorf("generated password has %d characters, want 20", len(generated))
				}
			case tc.wantPW == "" && !bytes.Equal(res.Password, generated):
				t.Errorf("stored generated password not reused")
			}
			if res.Notification != nil {
				checkNotification(t, res.Notification, generated)
			}
			if tc.leaves && res.Announce != nil {
				if err := res.Announce(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	if r, _ := st.row("new@partner.example"); r.source != ModeGeneratedToSender || !r.announced {
		t.Errorf("generated password stored with source %q, announced %v", r.source, r.announced)
	}
}

// TestGeneratedNeverForOutsiders plays mallory: a From line anyone can
// write (the gateway found no such user) to a partner, with
// generated-to-sender configured. Nothing may be generated, stored or
// announced to mallory, and a generated password that a user's held
// message left unannounced must not protect mallory's PDF either.
func TestGeneratedNeverForOutsiders(t *testing.T) {
	ctx := context.Background()
	const partner = "partner@partner.example"
	tests := []struct {
		name  string
		modes []string
		// pending: a user's earlier message generated a password and was
		// held, so it is stored but nobody has been told it.
		pending bool
		resolve func(p *Passwords) (Resolution, error)
	}{
		{"only mode", []string{"generated-to-sender"}, false, resolveAsMallory},
		{"after subject and preset", []string{"subject", "preset", "generated-to-sender"}, false, resolveAsMallory},
		{"For never takes the sender for a user", []string{"generated-to-sender"}, false, func(p *Passwords) (Resolution, error) {
			return p.Resolve(ctx, Query{Sender: "alice@example.org", Recipient: partner, Subject: "[secure] hi"})
		}},
		{"unannounced password from a held message, only mode", []string{"generated-to-sender"}, true, resolveAsMallory},
		{"unannounced password from a held message, preset first", []string{"preset", "generated-to-sender"}, true, resolveAsMallory},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			if tc.pending {
				if _, _, err := st.AddPDFPassword(ctx, partner, []byte("held-message-pw-4711"), ModeGeneratedToSender); err != nil {
					t.Fatal(err)
				}
			}
			p, err := NewPasswords(tc.modes, PasswordDeps{Store: st, NotFound: errMemNotFound, SubjectTag: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			before := st.adds
			res, err := tc.resolve(p)
			if !errors.Is(err, ErrNoPassword) || res.Password != nil || res.Notification != nil || res.Announce != nil {
				t.Fatalf("got %v, %v; want ErrNoPassword (held) and nothing to send", res, err)
			}
			r, stored := st.row(partner)
			if st.adds != before || stored != tc.pending || (stored && r.announced) {
				t.Errorf("store after mallory: %d adds, row %v announced %v; want it untouched", st.adds-before, stored, r.announced)
			}
		})
	}
}

func resolveAsMallory(p *Passwords) (Resolution, error) {
	return p.Resolve(context.Background(), Query{Sender: "mallory@evil.test", SenderIsUser: false, Recipient: "partner@partner.example", Subject: "[secure] hi"})
}

// TestNoticeComesWithTheMessageThatLeaves: a user's first message
// generates the password but is held (its notice is never sent, Announce
// never called). The password must not stay unknown to everyone: the next
// message that a user sends to the partner carries the notice, until one
// leaves and Announce marks it. Preset passwords never bring a notice.
func TestNoticeComesWithTheMessageThatLeaves(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	st.preset("preset@partner.example", "admin-chosen-pw")
	p, err := NewPasswords([]string{"preset", "generated-to-sender"}, PasswordDeps{Store: st, NotFound: errMemNotFound})
	if err != nil {
		t.Fatal(err)
	}
	const partner = "new@partner.example"
	steps := []struct {
		name       string
		sender     string
		isUser     bool
		recipient  string
		wantMode   string
		wantNoteTo string // "" = no notice
		leaves     bool
	}{
		{"first message generates, is held", "alice@example.org", true, partner, ModeGeneratedToSender, "alice@example.org", false},
		{"outsider meanwhile is held too", "mallory@evil.test", false, partner, "", "", false},
		{"next user's message carries the notice and leaves", "bob@example.org", true, partner, ModeGeneratedToSender, "bob@example.org", true},
		{"announced: no more notices", "alice@example.org", true, partner, ModePreset, "", true},
		{"announced password serves an outsider without a notice", "mallory@evil.test", false, partner, ModePreset, "", true},
		{"preset never brings a notice", "alice@example.org", true, "preset@partner.example", ModePreset, "", true},
	}
	var password []byte
	for _, step := range steps {
		res, err := p.Resolve(ctx, Query{Sender: step.sender, SenderIsUser: step.isUser, Recipient: step.recipient, Subject: "Angebot"})
		if step.wantMode == "" {
			if !errors.Is(err, ErrNoPassword) || res.Notification != nil {
				t.Fatalf("%s: %v, %v; want ErrNoPassword and no notice", step.name, res, err)
			}
			continue
		}
		if err != nil || res.Mode != step.wantMode {
			t.Fatalf("%s: %v, %v; want mode %s", step.name, res, err, step.wantMode)
		}
		if step.recipient == partner {
			if password == nil {
				password = res.Password
			}
			if !bytes.Equal(res.Password, password) {
				t.Fatalf("%s: a second password for the same partner", step.name)
			}
		}
		if got := noticeRecipient(t, res.Notification); got != step.wantNoteTo || (res.Announce != nil) != (step.wantNoteTo != "") {
			t.Fatalf("%s: notice to %q (announce %v), want %q", step.name, got, res.Announce != nil, step.wantNoteTo)
		}
		if res.Notification != nil && !bytes.Contains(res.Notification, password) {
			t.Fatalf("%s: the notice does not carry the password the PDF is sealed with", step.name)
		}
		if step.leaves && res.Announce != nil {
			if err := res.Announce(ctx); err != nil {
				t.Fatalf("%s: Announce: %v", step.name, err)
			}
		}
		if r, _ := st.row(step.recipient); r.announced != (step.leaves || step.recipient != partner) {
			t.Fatalf("%s: announced = %v after the message (left: %v)", step.name, r.announced, step.leaves)
		}
	}
}

// noticeRecipient is the To address of a notice ("" for none).
func noticeRecipient(t *testing.T, note []byte) string {
	t.Helper()
	if note == nil {
		return ""
	}
	mr, err := mail.CreateReader(bytes.NewReader(note))
	if err != nil {
		t.Fatalf("notice does not parse: %v", err)
	}
	to, err := mr.Header.AddressList("To")
	if err != nil || len(to) != 1 {
		t.Fatalf("notice To %v, %v", to, err)
	}
	return to[0].Address
}

// TestAnnounceFailure: when the store cannot record the announcement the
// gateway learns it (the notice then goes out again with a later message),
// and the error names the recipient but not the password.
func TestAnnounceFailure(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	st.failMark = errors.New("database is locked")
	p, err := NewPasswords([]string{"generated-to-sender"}, PasswordDeps{Store: st, NotFound: errMemNotFound})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Resolve(ctx, Query{Sender: "alice@example.org", SenderIsUser: true, Recipient: "new@partner.example", Subject: "x"})
	if err != nil || res.Announce == nil {
		t.Fatalf("%v, %v", res, err)
	}
	err = res.Announce(ctx)
	if err == nil || !strings.Contains(err.Error(), "new@partner.example") || !strings.Contains(err.Error(), "database is locked") || strings.Contains(err.Error(), string(res.Password)) {
		t.Errorf("Announce error %v; want the recipient and the cause, never the password", err)
	}
	if r, _ := st.row("new@partner.example"); r.announced {
		t.Error("marked announced although the store failed")
	}
}

// TestSubjectPasswordTooShort: "[pw:1]" and the like are refused with
// ErrPasswordTooShort (the gateway holds the recipient with it), not
// passed over to a weaker or different mode, and the error, which ends up
// in logs and the hold reason, never contains the password.
func TestSubjectPasswordTooShort(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	st.preset("partner@partner.example", "preset-pw-123")
	tests := []struct {
		name      string
		minLength int // 0 = default (10)
		subject   string
		short     string // the password that must not appear in the error
		wantErr   bool
	}{
		{"the issue's [pw:1]", 0, "Angebot [pw:1]", "", true},
		{"one character", 0, "Angebot [pw:Q]", "Q", true},
		{"nine characters", 0, "Angebot [pw:Xq7#zZ9!k]", "Xq7#zZ9!k", true},
		{"ten characters", 0, "Angebot [pw:Xq7#zZ9!kP]", "", false},
		{"counted in characters, not bytes", 0, "Angebot [pw:Äpfel€Äpf]", "Äpfel€Äpf", true},
		{"ten non-ASCII characters", 0, "Angebot [pw:Äpfel€Äpfe]", "", false},
		{"configured minimum", 14, "Angebot [pw:Xq7#zZ9!kP-ab]", "Xq7#zZ9!kP-ab", true},
		{"padding is not counted", 0, "Angebot [pw:   Xq7#z   ]", "Xq7#z", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPasswords([]string{"subject", "preset"}, PasswordDeps{Store: st, NotFound: errMemNotFound, MinLength: tc.minLength})
			if err != nil {
				t.Fatal(err)
			}
			res, err := p.Resolve(ctx, Query{Sender: "alice@example.org", SenderIsUser: true, Recipient: "partner@partner.example", Subject: tc.subject})
			if !tc.wantErr {
				if err != nil || res.Mode != ModeSubject {
					t.Fatalf("got %v, %v; want the subject password", res, err)
				}
				return
			}
			if !errors.Is(err, ErrPasswordTooShort) || res.Password != nil {
				t.Fatalf("got %v, %v; want ErrPasswordTooShort and no password (not the preset)", res, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "[pw:") || !strings.Contains(msg, "pdf.min_password_length") || !strings.Contains(msg, "longer password") {
				t.Errorf("error %q: want what is wrong and what to do, without the tag", msg)
			}
			if tc.short != "" && strings.Contains(msg, tc.short) {
				t.Errorf("error %q contains the password", msg)
			}
			if res.Subject != "Angebot" {
				t.Errorf("subject %q: the tag must still be stripped", res.Subject)
			}
		})
	}
	if _, err := NewPasswords([]string{"subject"}, PasswordDeps{MinLength: LeastMinPasswordLength - 1}); err == nil || !strings.Contains(err.Error(), "pdf.min_password_length") {
		t.Errorf("minimum below %d accepted: %v", LeastMinPasswordLength, err)
	}
}

// checkNotification parses the notification as a mail client would.
func checkNotification(t *testing.T, note, pw []byte) {
	t.Helper()
	mr, err := mail.CreateReader(bytes.NewReader(note))
	if err != nil {
		t.Fatalf("notification does not parse: %v", err)
	}
	to, _ := mr.Header.AddressList("To")
	subj, _ := mr.Header.Subject()
	if len(to) != 1 || to[0].Address != "alice@example.org" {
		t.Errorf("notification To = %v, want the sender", to)
	}
	if subj != "PDF-Passwort für Ihre Nachricht an new@partner.example" {
		t.Errorf("notification Subject = %q", subj)
	}
	if mr.Header.Get(NotificationHeader) != "pdf-password" || mr.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Error("notification lacks its marker headers")
	}
	part, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(part.Body)
	if !bytes.Contains(body, pw) || !bytes.Contains(body, []byte("telefonisch")) || !bytes.Contains(body, []byte("„Erstkontakt“")) {
		t.Errorf("notification body lacks the password or the text:\n%s", body)
	}
}

func TestPasswordsFailClosed(t *testing.T) {
	ctx := context.Background()
	t.Run("store outage does not fall through", func(t *testing.T) {
		st := newMemStore()
		st.failGet = errors.New("database is locked")
		p, _ := NewPasswords([]string{"preset", "generated-to-sender"}, PasswordDeps{Store: st, NotFound: errMemNotFound})
		_, err := p.Resolve(ctx, Query{Sender: "a@example.org", Recipient: "b@partner.example", Subject: "x"})
		if err == nil || !strings.Contains(err.Error(), "database is locked") || !strings.Contains(err.Error(), "preset") {
			t.Fatalf("err = %v, want the store error naming the mode", err)
		}
	})
	t.Run("store write failure stores nothing, sends nothing", func(t *testing.T) {
		st := newMemStore()
		st.failSet = errors.New("disk full")
		p, _ := NewPasswords([]string{"generated-to-sender"}, PasswordDeps{Store: st, NotFound: errMemNotFound})
		res, err := p.Resolve(ctx, Query{Sender: "a@example.org", SenderIsUser: true, Recipient: "b@partner.example", Subject: "x"})
		if err == nil || res.Notification != nil || res.Password != nil {
			t.Fatalf("got %v, %v; want an error and nothing to send", res, err)
		}
	})
	t.Run("no mode has a password", func(t *testing.T) {
		p, _ := NewPasswords([]string{"subject", "preset"}, PasswordDeps{Store: newMemStore(), NotFound: errMemNotFound})
		res, err := p.Resolve(ctx, Query{Sender: "a@example.org", Recipient: "b@partner.example", Subject: "Hallo [pw:]"})
		if !errors.Is(err, ErrNoPassword) || res.Subject != "Hallo" {
			t.Fatalf("got %v %q, %v; want ErrNoPassword and a cleaned subject", res, res.Subject, err)
		}
	})
	t.Run("config errors", func(t *testing.T) {
		for _, tc := range []struct {
			modes []string
			deps  PasswordDeps
			want  string
		}{
			{[]string{"portal"}, PasswordDeps{}, "portal mode is not available"},
			{[]string{"preset"}, PasswordDeps{}, "needs the store"},
			{[]string{"subject", "subject"}, PasswordDeps{}, "listed twice"},
			{[]string{"telepathy"}, PasswordDeps{}, `unknown mode "telepathy"`},
			{nil, PasswordDeps{}, "no mode configured"},
		} {
			if _, err := NewPasswords(tc.modes, tc.deps); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewPasswords(%v): err = %v, want %q", tc.modes, err, tc.want)
			}
		}
	})
}

// pendingPortal stands in for the portal issue's source.
type pendingPortal struct{ invited []string }

func (*pendingPortal) Mode() string { return ModePortal }
func (p *pendingPortal) Lookup(_ context.Context, q Query) (Found, error) {
	p.invited = append(p.invited, q.Recipient)
	return Found{Pending: true}, nil
}

func TestPasswordsPortalPending(t *testing.T) {
	portal := &pendingPortal{}
	p, err := NewPasswords([]string{"preset", "portal"}, PasswordDeps{Store: newMemStore(), NotFound: errMemNotFound, Portal: portal})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Resolve(context.Background(), Query{Sender: "a@example.org", Recipient: "B@Partner.example", Subject: "Hallo"})
	if err != nil || !res.Pending || res.Mode != ModePortal || res.Password != nil {
		t.Fatalf("got %v, %v; want pending from the portal", res, err)
	}
	if len(portal.invited) != 1 || portal.invited[0] != "b@partner.example" {
		t.Errorf("portal asked for %v", portal.invited)
	}
}

func TestResolutionNeverShowsPassword(t *testing.T) {
	res := Resolution{Password: []byte("TopSecret-4711"), Mode: ModePreset, Subject: "x", Notification: []byte("note"),
		Announce: func(context.Context) error { return nil }}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("resolved", "pdf", res)
	for _, s := range []string{fmt.Sprintf("%v", res), fmt.Sprintf("%+v", res), fmt.Sprintf("%#v", res), fmt.Sprint(res), logged.String()} {
		if strings.Contains(s, "TopSecret") || strings.Contains(s, "84 111 112") {
			t.Errorf("password visible in %q", s)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(logged.Bytes(), &m); err != nil || m["pdf"] == nil {
		t.Errorf("slog output %s", logged.String())
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		pw, err := GeneratePassword(20)
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != 20 || strings.ContainsAny(string(pw), "0Oo1lI") {
			t.Fatalf("bad password %q", pw)
		}
		// ASCII letters and digits only: archivers that encode the
		// password in Latin-1 (pypdf) or type it on any keyboard open it.
		for _, c := range pw {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '2' && c <= '9') {
				t.Fatalf("password %q has %q", pw, c)
			}
		}
		if seen[string(pw)] {
			t.Fatal("repeated password")
		}
		seen[string(pw)] = true
	}
	if _, err := GeneratePassword(6); err == nil {
		t.Error("6-character password accepted")
	}
}

// TestGeneratedSourceConcurrentFirstMails: first mails to a new partner at
// once all get the one stored password; every notice carries it.
func TestGeneratedSourceConcurrentFirstMails(t *testing.T) {
	st := newMemStore()
	src := &GeneratedSource{Store: st, NotFound: errMemNotFound}
	var wg sync.WaitGroup
	results := make([]Found, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := src.Lookup(context.Background(), Query{Sender: "a@example.org", SenderIsUser: true, Recipient: "x@partner.example"})
			if err != nil {
				t.Error(err)
			}
			results[i] = f
		}()
	}
	wg.Wait()
	r, _ := st.row("x@partner.example")
	for _, f := range results {
		if !bytes.Equal(f.Password, r.pw) {
			t.Fatal("concurrent first mails got different passwords, or not the stored one")
		}
		if f.Notification == nil || !bytes.Contains(f.Notification, r.pw) {
			t.Fatal("a message sealed with the unannounced password came without its notice")
		}
	}
}
