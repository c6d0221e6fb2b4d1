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
// real SQLite store is exercised in store_integration_test.go.
type memStore struct {
	mu      sync.Mutex
	pw      map[string][]byte
	source  map[string]string
	failGet error
	failSet error
}

var errMemNotFound = errors.New("mem: not found")

func newMemStore() *memStore {
	return &memStore{pw: map[string][]byte{}, source: map[string]string{}}
}

func (m *memStore) SetPDFPassword(_ context.Context, email string, pw []byte, source string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failSet != nil {
		return m.failSet
	}
	m.pw[email], m.source[email] = append([]byte(nil), pw...), source
	return nil
}

func (m *memStore) PDFPassword(_ context.Context, email string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failGet != nil {
		return nil, "", m.failGet
	}
	pw, ok := m.pw[email]
	if !ok {
		return nil, "", fmt.Errorf("pdf password for %s: %w", email, errMemNotFound)
	}
	return pw, m.source[email], nil
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
	st.pw["preset@partner.example"] = []byte("preset-pw-123")
	st.source["preset@partner.example"] = "preset"
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
	}{
		{"subject wins", "preset@partner.example", "Akte [pw:aus-betreff]", ModeSubject, "Akte", "aus-betreff", false},
		{"preset when no tag", "Preset@Partner.example", "Akte", ModePreset, "Akte", "preset-pw-123", false},
		{"generated for a new recipient", "new@partner.example", "Erstkontakt", ModeGeneratedToSender, "Erstkontakt", "", true},
		// Stored now: preset mode finds it, no second notification.
		{"generated is reused", "new@partner.example", "Zweite Mail", ModePreset, "Zweite Mail", "", false},
	}
	var generated []byte
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.For(ctx, "alice@example.org", tc.recipient, tc.subject)
			if err != nil {
				t.Fatal(err)
			}
			if res.Mode != tc.wantMode || res.Subject != tc.wantSubject || (res.Notification != nil) != tc.wantNote {
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
		})
	}
	if st.source["new@partner.example"] != ModeGeneratedToSender {
		t.Errorf("generated password stored with source %q", st.source["new@partner.example"])
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
		_, err := p.For(ctx, "a@example.org", "b@partner.example", "x")
		if err == nil || !strings.Contains(err.Error(), "database is locked") || !strings.Contains(err.Error(), "preset") {
			t.Fatalf("err = %v, want the store error naming the mode", err)
		}
	})
	t.Run("store write failure stores nothing, sends nothing", func(t *testing.T) {
		st := newMemStore()
		st.failSet = errors.New("disk full")
		p, _ := NewPasswords([]string{"generated-to-sender"}, PasswordDeps{Store: st, NotFound: errMemNotFound})
		res, err := p.For(ctx, "a@example.org", "b@partner.example", "x")
		if err == nil || res.Notification != nil || res.Password != nil {
			t.Fatalf("got %v, %v; want an error and nothing to send", res, err)
		}
	})
	t.Run("no mode has a password", func(t *testing.T) {
		p, _ := NewPasswords([]string{"subject", "preset"}, PasswordDeps{Store: newMemStore(), NotFound: errMemNotFound})
		res, err := p.For(ctx, "a@example.org", "b@partner.example", "Hallo [pw:]")
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
	res, err := p.For(context.Background(), "a@example.org", "B@Partner.example", "Hallo")
	if err != nil || !res.Pending || res.Mode != ModePortal || res.Password != nil {
		t.Fatalf("got %v, %v; want pending from the portal", res, err)
	}
	if len(portal.invited) != 1 || portal.invited[0] != "b@partner.example" {
		t.Errorf("portal asked for %v", portal.invited)
	}
}

func TestResolutionNeverShowsPassword(t *testing.T) {
	res := Resolution{Password: []byte("TopSecret-4711"), Mode: ModePreset, Subject: "x", Notification: []byte("note")}
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
		if len(pw) != 20 || strings.ContainsAny(string(pw), "0O1lI") {
			t.Fatalf("bad password %q", pw)
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

func TestGeneratedSourceConcurrentFirstMails(t *testing.T) {
	st := newMemStore()
	src := &GeneratedSource{Store: st, NotFound: errMemNotFound}
	var wg sync.WaitGroup
	results := make([]Found, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := src.Lookup(context.Background(), Query{Sender: "a@example.org", Recipient: "x@partner.example"})
			if err != nil {
				t.Error(err)
			}
			results[i] = f
		}()
	}
	wg.Wait()
	notes := 0
	for _, f := range results {
		if !bytes.Equal(f.Password, results[0].Password) {
			t.Fatal("concurrent first mails got different passwords")
		}
		if f.Notification != nil {
			notes++
		}
	}
	if notes != 1 {
		t.Errorf("%d notifications for one new password, want 1", notes)
	}
}
