package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sealgate/sealgate/internal/testpeer"
)

func bcryptHash(t testing.TB, password string, cost int) []byte {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLoadUsers(t *testing.T) {
	hash := string(bcryptHash(t, "pw", bcrypt.MinCost))
	tests := []struct {
		name    string
		file    string
		want    map[string]AccountRole
		wantErr []string // all in the error
	}{
		{name: "roles", file: "# accounts\n\nexchange:" + hash + ":relay\nalice@org.test:" + hash + "\nbob@org.test:" + hash + ":personal\n",
			want: map[string]AccountRole{"exchange": RoleRelay, "alice@org.test": RolePersonal, "bob@org.test": RolePersonal}},
		{name: "no role, not an address", file: "# x\nexchange:" + hash + "\n",
			wantErr: []string{"line 2", `"exchange"`, "append :relay"}},
		{name: "unknown role", file: "exchange:" + hash + ":admin\n",
			wantErr: []string{"line 1", `"exchange"`, `unknown role "admin"`, "relay"}},
		{name: "role in other case", file: "exchange:" + hash + ":Relay\n",
			wantErr: []string{"line 1", `unknown role "Relay"`}},
		{name: "personal needs an address", file: "exchange:" + hash + ":personal\n",
			wantErr: []string{"line 1", `"exchange"`, "email address"}},
		{name: "display name is not an address", file: "Alice <alice@org.test>:" + hash + "\n",
			wantErr: []string{"line 1", "append :relay"}},
		{name: "not bcrypt", file: "exchange:{SHA}secretdigest:relay\n",
			wantErr: []string{"line 1", `"exchange"`, "htpasswd -nbB"}},
		{name: "too many fields", file: "exchange:" + hash + ":relay:x\n",
			wantErr: []string{"line 1", "name:bcrypt-hash[:role]"}},
		{name: "duplicate", file: "exchange:" + hash + ":relay\nexchange:" + hash + ":relay\n",
			wantErr: []string{"line 2", `"exchange"`, "twice"}},
		// An empty file would mean no AUTH at all.
		{name: "no accounts", file: "# nobody yet\n\n", wantErr: []string{"no accounts", "unset auth_users_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadUsers(path)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("loaded %d accounts, want an error", len(got))
				}
				for _, w := range append(tc.wantErr, path) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if strings.Contains(err.Error(), hash) || strings.Contains(err.Error(), "secretdigest") {
					t.Errorf("error shows the hash: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d accounts, want %d", len(got), len(tc.want))
			}
			for name, role := range tc.want {
				if got[name].Role != role || string(got[name].Hash) != hash {
					t.Errorf("%s: role %q, want %q", name, got[name].Role, role)
				}
			}
		})
	}
}

// An unknown user is checked against a dummy hash as costly as the
// dearest real one, so the reply time does not tell which users exist.
func TestDummyHashCostMatchesAccounts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		costs []int
		want  int
	}{
		{"one cost", []int{5}, 5},
		{"highest of several", []int{4, 6, 5}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			accounts := map[string]Account{}
			for i, c := range tc.costs {
				accounts[fmt.Sprintf("u%d@org.test", i)] = Account{Hash: bcryptHash(t, "pw", c), Role: RolePersonal}
			}
			l := NewListener(ListenerConfig{Accounts: accounts}, nil)
			got, err := bcrypt.Cost(l.dummyHash)
			if err != nil || got != tc.want {
				t.Fatalf("dummy cost %d (%v), want %d", got, err, tc.want)
			}
		})
	}
}

// dialFrom opens an SMTP session with STARTTLS from a given loopback
// address (Linux routes all of 127/8 to lo), so that tests can play
// several clients.
func dialFrom(t *testing.T, addr, localIP string) *smtp.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// reply renders err as the SMTP reply code and enhanced code ("" for nil).
func reply(err error) string {
	if err == nil {
		return ""
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return "not an SMTP reply: " + err.Error()
	}
	return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
}

// An attacker guessing passwords is stopped after authFailureLimit
// failures, per client address and per account name; once blocked, even
// the right password gets 454 (it is not checked).
func TestAuthFailuresAreLimited(t *testing.T) {
	q, _ := testQueue(t, passAll{}, &recordingRelay{})
	accounts := map[string]Account{
		"exchange":       {Hash: bcryptHash(t, "right", bcrypt.MinCost), Role: RoleRelay},
		"alice@org.test": {Hash: bcryptHash(t, "alice-pw", bcrypt.MinCost), Role: RolePersonal},
	}
	addr := startListener(t, ListenerConfig{TLS: selfSigned(t), Accounts: accounts}, q)
	auth := func(from, user, pass string) string {
		return reply(dialFrom(t, addr, from).Auth(sasl.NewPlainClient("", user, pass)))
	}
	// The connector logs in from 127.0.0.1 before the attack.
	if got := auth("127.0.0.1", "exchange", "right"); got != "" {
		t.Fatalf("connector login: %s", got)
	}
	steps := []struct {
		name       string
		from       string
		user, pass string
		want       string
	}{
		// One client guesses (unknown names count the same).
		{"guess 1", "127.0.0.2", "exchange", "guess1", "535 5.7.8"},
		{"guess 2", "127.0.0.2", "nosuchuser", "guess2", "535 5.7.8"},
		{"guess 3", "127.0.0.2", "exchange", "guess3", "535 5.7.8"},
		{"guess 4", "127.0.0.2", "exchange", "guess4", "535 5.7.8"},
		{"guess 5", "127.0.0.2", "exchange", "guess5", "535 5.7.8"},
		{"client blocked, right password unchecked", "127.0.0.2", "exchange", "right", "454 4.7.0"},
		{"client blocked for other names", "127.0.0.2", "alice@org.test", "alice-pw", "454 4.7.0"},
		{"other clients unaffected", "127.0.0.3", "alice@org.test", "alice-pw", ""},
		// Many clients guess one name: after 5 failures for it in all
		// (4 above), the name is blocked for every new client ...
		{"guess for the name from elsewhere", "127.0.0.4", "exchange", "guess6", "535 5.7.8"},
		{"name blocked, right password unchecked", "127.0.0.5", "exchange", "right", "454 4.7.0"},
		// ... but not for the client that logged in as it before, so
		// guessing cannot lock the connector out.
		{"connector keeps working", "127.0.0.1", "exchange", "right", ""},
		{"other names unaffected", "127.0.0.5", "alice@org.test", "alice-pw", ""},
	}
	for _, st := range steps {
		if got := auth(st.from, st.user, st.pass); got != st.want {
			t.Fatalf("%s: AUTH from %s as %s: reply %q, want %q", st.name, st.from, st.user, got, st.want)
		}
	}
}

// A blocked client is turned away before LOGIN even prompts.
func TestAuthLimitLogin(t *testing.T) {
	q, _ := testQueue(t, passAll{}, &recordingRelay{})
	accounts := map[string]Account{"exchange": {Hash: bcryptHash(t, "right", bcrypt.MinCost), Role: RoleRelay}}
	addr := startListener(t, ListenerConfig{TLS: selfSigned(t), Accounts: accounts}, q)
	for i := 0; i < authFailureLimit; i++ {
		if got := reply(dialFrom(t, addr, "127.0.0.1").Auth(sasl.NewLoginClient("exchange", "wrong"))); got != "535 5.7.8" {
			t.Fatalf("failure %d: %q", i+1, got)
		}
	}
	login := &countingLogin{user: "exchange", pass: "right"}
	if got := reply(dialFrom(t, addr, "127.0.0.1").Auth(login)); got != "454 4.7.0" || login.prompts != 0 {
		t.Fatalf("blocked LOGIN: %q after %d prompts, want 454 4.7.0 at once", got, login.prompts)
	}
}

// countingLogin is a LOGIN client that counts the server's prompts.
type countingLogin struct {
	user, pass string
	prompts    int
}

func (c *countingLogin) Start() (string, []byte, error) { return sasl.Login, nil, nil }

func (c *countingLogin) Next([]byte) ([]byte, error) {
	c.prompts++
	if c.prompts == 1 {
		return []byte(c.user), nil
	}
	return []byte(c.pass), nil
}

func TestAuthLimiterTable(t *testing.T) {
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	newLimiter := func(size int) *authLimiter {
		a := newAuthLimiter()
		a.size = size
		a.now = func() time.Time { return clock }
		return a
	}
	fail := func(a *authLimiter, client, name string) {
		if !a.begin(client, name) {
			t.Fatalf("attempt from %s for %s refused early", client, name)
		}
		a.end(client, name, false)
	}
	tests := []struct {
		name string
		run  func(a *authLimiter) bool // whether the last attempt is allowed
		size int
		want bool
	}{
		{"failures spread beyond the window do not block", func(a *authLimiter) bool {
			for i := 0; i < 2*authFailureLimit; i++ {
				fail(a, "c", "n")
				clock = clock.Add(authFailureWindow/(authFailureLimit-1) + time.Second)
			}
			return a.begin("c", "n")
		}, 16, true},
		{"a block ends", func(a *authLimiter) bool {
			for i := 0; i < authFailureLimit; i++ {
				fail(a, "c", "n")
			}
			clock = clock.Add(authBlockFor - time.Second)
			if a.begin("c", "n") {
				t.Error("allowed before the block ended")
			}
			clock = clock.Add(2 * time.Second)
			return a.begin("c", "n")
		}, 16, true},
		// Parallel connections: attempts still being checked count, or
		// a burst would get many guesses before the first failure.
		{"attempts in flight count", func(a *authLimiter) bool {
			for i := 0; i < authFailureLimit; i++ {
				if !a.begin("c", fmt.Sprint("n", i)) {
					t.Fatalf("attempt %d refused", i)
				}
			}
			return a.begin("c", "other")
		}, 16, false},
		{"a success lets the next one through", func(a *authLimiter) bool {
			for i := 0; i < 3*authFailureLimit; i++ {
				a.begin("c", "n")
				a.end("c", "n", true)
			}
			return a.begin("c", "n")
		}, 16, true},
		// Names from an attacker must not grow the table; a full table
		// of live blocks turns new keys away rather than forgetting a
		// block or counting nothing.
		{"full table of blocks refuses new keys", func(a *authLimiter) bool {
			for _, c := range []string{"c1", "c2"} {
				for i := 0; i < authFailureLimit; i++ {
					fail(a, c, c+"-name")
				}
			}
			if len(a.clients) > 2 || len(a.names) > 2 {
				t.Errorf("tables grew past 2: %d, %d", len(a.clients), len(a.names))
			}
			return a.begin("c3", "c3-name")
		}, 2, false},
		{"full table makes room from unblocked counts", func(a *authLimiter) bool {
			fail(a, "c1", "n1")
			fail(a, "c2", "n2")
			return a.begin("c3", "n3")
		}, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.run(newLimiter(tc.size)); got != tc.want {
				t.Fatalf("last attempt allowed = %v, want %v", got, tc.want)
			}
		})
	}
}

// A personal account sends only as its own address (or what OwnsAddress
// accepts); the relay account as anyone. The account and its role are
// spooled with the message for the pipeline's check.
func TestPersonalAccountSender(t *testing.T) {
	errDirectory := errors.New("directory down")
	owns := func(_ context.Context, account, addr string) (bool, error) {
		switch {
		case addr == "down@org.test":
			return false, errDirectory
		case account == "alice@org.test" && addr == "a.smith@org.test":
			return true, nil
		}
		return false, nil
	}
	accounts := map[string]Account{
		"exchange":       {Hash: bcryptHash(t, "relay-pw", bcrypt.MinCost), Role: RoleRelay},
		"alice@org.test": {Hash: bcryptHash(t, "alice-pw", bcrypt.MinCost), Role: RolePersonal},
	}
	tests := []struct {
		name       string
		hook       bool
		user, pass string
		from       string
		want       string // MAIL FROM reply, "" for accepted
		role       AccountRole
	}{
		{"own address", false, "alice@org.test", "alice-pw", "alice@org.test", "", RolePersonal},
		{"own address in other case", false, "alice@org.test", "alice-pw", "Alice@ORG.test", "", RolePersonal},
		{"another user", false, "alice@org.test", "alice-pw", "ceo@org.test", "550 5.7.1", ""},
		{"null sender", false, "alice@org.test", "alice-pw", "", "550 5.7.1", ""},
		{"Unicode case folding (long s)", false, "alice@org.test", "alice-pw", "alice@org.te\u017ft", "550 5.7.1", ""},
		{"alias without a hook", false, "alice@org.test", "alice-pw", "a.smith@org.test", "550 5.7.1", ""},
		{"alias the hook confirms", true, "alice@org.test", "alice-pw", "a.smith@org.test", "", RolePersonal},
		{"address the hook denies", true, "alice@org.test", "alice-pw", "ceo@org.test", "550 5.7.1", ""},
		{"hook fails", true, "alice@org.test", "alice-pw", "down@org.test", "451 4.3.0", ""},
		{"hook fails, own address needs no hook", true, "alice@org.test", "alice-pw", "alice@org.test", "", RolePersonal},
		{"relay account, any sender", false, "exchange", "relay-pw", "ceo@org.test", "", RoleRelay},
		{"relay account, null sender", false, "exchange", "relay-pw", "", "", RoleRelay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := testQueue(t, passAll{}, &recordingRelay{}) // not run: the message stays spooled
			cfg := ListenerConfig{TLS: selfSigned(t), Accounts: accounts}
			if tc.hook {
				cfg.OwnsAddress = owns
			}
			c := dialFrom(t, startListener(t, cfg, q), "127.0.0.1")
			if err := c.Auth(sasl.NewPlainClient("", tc.user, tc.pass)); err != nil {
				t.Fatal(err)
			}
			err := c.SendMail(tc.from, []string{"partner@ext.test"}, strings.NewReader("Subject: t\r\n\r\nx\r\n"))
			if got := reply(err); got != tc.want {
				t.Fatalf("MAIL FROM:<%s> as %s: reply %q (%v), want %q", tc.from, tc.user, got, err, tc.want)
			}
			ids, err := q.Spool.IDs()
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" {
				if len(ids) != 0 {
					t.Fatalf("refused sender spooled: %v", ids)
				}
				return
			}
			if len(ids) != 1 {
				t.Fatalf("spooled %v, want one message", ids)
			}
			if user, role := spooledAccount(t, q.Spool, ids[0]); user != tc.user || role != tc.role {
				t.Fatalf("spooled account %q role %q, want %q %q", user, role, tc.user, tc.role)
			}
		})
	}
}

// spooledAccount opens spool message id and returns its account and role.
func spooledAccount(t *testing.T, sp *Spool, id string) (string, AccountRole) {
	t.Helper()
	m, err := sp.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	return m.Envelope.AuthUser, m.Envelope.AuthRole
}

// A spool file written before accounts had roles opens with the
// narrowest role, never as a relay or as unauthenticated.
func TestSpoolAuthRole(t *testing.T) {
	for _, tc := range []struct {
		name     string
		user     string
		role     AccountRole
		wantRole AccountRole
	}{
		{"relay kept", "exchange", RoleRelay, RoleRelay},
		{"personal kept", "alice@org.test", RolePersonal, RolePersonal},
		{"old file without role", "exchange", "", RolePersonal},
		{"unauthenticated", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := testSpool(t)
			env := &Envelope{ID: NewID(), From: "a@org.test", Recipients: []Recipient{{Addr: "b@ext.test"}}, AuthUser: tc.user, AuthRole: tc.role}
			if _, err := sp.Write(env, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
				t.Fatal(err)
			}
			if user, role := spooledAccount(t, sp, env.ID); user != tc.user || role != tc.wantRole {
				t.Fatalf("opened %q/%q, want %q/%q", user, role, tc.user, tc.wantRole)
			}
		})
	}
}

// AUTH is neither offered nor accepted before STARTTLS, and an
// authorization identity other than the user is refused.
func TestAuthNeedsTLSAndOwnIdentity(t *testing.T) {
	q, _ := testQueue(t, passAll{}, &recordingRelay{})
	accounts := map[string]Account{"exchange": {Hash: bcryptHash(t, "s3cret", bcrypt.MinCost), Role: RoleRelay}}
	addr := startListener(t, ListenerConfig{TLS: selfSigned(t), Accounts: accounts}, q)

	// "\x00exchange\x00s3cret": the right password, in the clear.
	rep := converse(t, addr, "EHLO attacker.test\r\n", "AUTH PLAIN AGV4Y2hhbmdlAHMzY3JldA==\r\n", "MAIL FROM:<ceo@org.test>\r\n")
	if strings.Contains(rep[1], "AUTH") {
		t.Errorf("AUTH offered before STARTTLS: %s", rep[1])
	}
	if rep[2] != "523 5.7.10 TLS is required" {
		t.Errorf("AUTH before STARTTLS: %q, want 523 5.7.10", rep[2])
	}
	if !strings.HasPrefix(rep[3], "530 5.7.0 ") {
		t.Errorf("MAIL after refused AUTH: %q, want 530 5.7.0", rep[3])
	}

	c := dialFrom(t, addr, "127.0.0.1")
	if ok, _ := c.Extension("AUTH"); !ok {
		t.Fatal("AUTH not offered after STARTTLS")
	}
	if got := reply(c.Auth(sasl.NewPlainClient("ceo@org.test", "exchange", "s3cret"))); got != "535 5.7.8" {
		t.Fatalf("AUTH with authzid ceo@org.test: %q, want 535 5.7.8", got)
	}
}

// swaks, a real SMTP client, logs in over STARTTLS: as a personal account
// it cannot send as another user, and a guessing client is turned away
// with 454 once over the limit, even with the right password.
func TestAuthWithSwaks(t *testing.T) {
	testpeer.Require(t, "swaks")
	q, _ := testQueue(t, passAll{}, &recordingRelay{})
	accounts := map[string]Account{"alice@org.test": {Hash: bcryptHash(t, "alice-pw", bcrypt.MinCost), Role: RolePersonal}}
	addr := startListener(t, ListenerConfig{TLS: selfSigned(t), Accounts: accounts}, q)
	swaks := func(from, pass string) string {
		res := testpeer.Run(t, nil, "swaks", "--server", addr, "--tls", "--auth", "LOGIN",
			"--auth-user", "alice@org.test", "--auth-password", pass,
			"--from", from, "--to", "partner@ext.test", "--body", "x", "--quit-after", "MAIL")
		return string(res.Stdout)
	}
	steps := []struct {
		name, from, pass string
		want             string // in swaks' transcript
	}{
		{"own address", "alice@org.test", "alice-pw", "<~  250 2.0.0 Roger, accepting mail from <alice@org.test>"},
		{"another user's address", "ceo@org.test", "alice-pw", "<~* 550 5.7.1 Account alice@org.test may send only as its own address"},
		{"wrong password", "alice@org.test", "guess", "<~* 535 5.7.8"},
		{"blocked, right password", "alice@org.test", "alice-pw", "<~* 454 4.7.0"},
	}
	for i, st := range steps {
		if i == len(steps)-1 { // the rest of the guesses, quicker than swaks
			for range authFailureLimit - 1 {
				if got := reply(dialFrom(t, addr, "127.0.0.1").Auth(sasl.NewPlainClient("", "alice@org.test", "guess"))); got != "535 5.7.8" {
					t.Fatalf("guess: %q", got)
				}
			}
		}
		if out := swaks(st.from, st.pass); !strings.Contains(out, st.want) {
			t.Fatalf("%s: swaks transcript lacks %q:\n%s", st.name, st.want, out)
		}
	}
}
