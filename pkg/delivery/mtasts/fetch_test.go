package mtasts

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

const goodPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx1.good.test\r\nmax_age: 86400\r\n"

// policyServer is an HTTPS server on 127.0.0.1 that answers per policy
// host (the Host header's name) as the test says, with a certificate
// from ca valid for that host, or a bad one where the host name says so.
type policyServer struct {
	port   int
	mu     sync.Mutex
	hits   map[string]int
	answer map[string]func(w http.ResponseWriter, r *http.Request)
}

func startPolicyServer(t *testing.T, ca *testpeer.TLSTestCA) *policyServer {
	t.Helper()
	ps := &policyServer{hits: map[string]int{}, answer: map[string]func(http.ResponseWriter, *http.Request){}}
	certs := map[string]tls.Certificate{}
	var certMu sync.Mutex
	cfg := &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		certMu.Lock()
		defer certMu.Unlock()
		if c, ok := certs[h.ServerName]; ok {
			return &c, nil
		}
		o := testpeer.ServerCertOptions{Names: []string{h.ServerName}}
		switch {
		case strings.Contains(h.ServerName, "wrongname"):
			o.Names = []string{"mta-sts.other.test"}
		case strings.Contains(h.ServerName, "selfsigned"):
			o.SelfSigned = true
		case strings.Contains(h.ServerName, "expired"):
			o.Expired = true
		}
		c := ca.ServerCert(t, o)
		certs[h.ServerName] = c
		return &c, nil
	}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	ps.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		ps.mu.Lock()
		ps.hits[host]++
		a := ps.answer[host]
		ps.mu.Unlock()
		if a == nil || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		a(w, r)
	})}
	go srv.Serve(ln) //nolint:errcheck // closed below
	t.Cleanup(func() { srv.Close() })
	return ps
}

func (ps *policyServer) set(host string, a func(w http.ResponseWriter, r *http.Request)) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.answer[host] = a
}

func (ps *policyServer) count(host string) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.hits[host]
}

func serve(body, ctype string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", ctype)
		fmt.Fprint(w, body)
	}
}

func loopback(context.Context, string) ([]net.IP, error) {
	return []net.IP{net.IPv4(127, 0, 0, 1)}, nil
}

// TestFetch plays the policy host, honest and not: only a 200 text/plain
// answer within 64 KiB, over a certificate valid for mta-sts.DOMAIN from
// a trusted root, without a redirect, is a policy.
func TestFetch(t *testing.T) {
	ca := testpeer.NewTLSTestCA(t)
	ps := startPolicyServer(t, ca)
	f := &Fetcher{Roots: ca.Pool, Resolve: loopback, Port: ps.port, Timeout: 5 * time.Second}
	ps.set("mta-sts.good.test", serve(goodPolicy, "text/plain; charset=utf-8"))
	ps.set("mta-sts.redirect.test", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://mta-sts.good.test:"+fmt.Sprint(ps.port)+"/.well-known/mta-sts.txt", http.StatusFound)
	})
	ps.set("mta-sts.html.test", serve(goodPolicy, "text/html"))
	ps.set("mta-sts.notype.test", func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = nil
		fmt.Fprint(w, goodPolicy)
	})
	ps.set("mta-sts.oversize.test", serve(goodPolicy+strings.Repeat("x: y\r\n", MaxPolicyBytes/6+1), "text/plain"))
	ps.set("mta-sts.status.test", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprint(w, goodPolicy)
	})
	for _, d := range []string{"wrongname", "selfsigned", "expired"} {
		ps.set("mta-sts."+d+".test", serve(goodPolicy, "text/plain"))
	}
	cases := []struct {
		domain string
		ok     bool
	}{
		{"good.test", true},
		{"redirect.test", false},
		{"html.test", false},
		{"notype.test", false},
		{"oversize.test", false},
		{"status.test", false},
		{"wrongname.test", false},
		{"selfsigned.test", false},
		{"expired.test", false},
		{"absent.test", false},
	}
	for _, c := range cases {
		t.Run(c.domain, func(t *testing.T) {
			body, err := f.Fetch(context.Background(), c.domain)
			if !c.ok {
				if !errors.Is(err, ErrFetch) {
					t.Fatalf("Fetch = %q, %v; want ErrFetch", body, err)
				}
				return
			}
			if err != nil || string(body) != goodPolicy {
				t.Fatalf("Fetch = %q, %v", body, err)
			}
		})
	}
	if n := ps.count("mta-sts.good.test"); n != 1 {
		t.Fatalf("the redirect was followed: good.test fetched %d times, want 1", n)
	}
	// Without the test CA among the roots, even the good host is refused.
	f.Roots = nil
	if _, err := f.Fetch(context.Background(), "good.test"); !errors.Is(err, ErrFetch) {
		t.Fatalf("a certificate from an untrusted CA was accepted: %v", err)
	}
}

type txtMap struct {
	mu sync.Mutex
	m  map[string][]string
}

func (x *txtMap) LookupTXT(_ context.Context, name string) ([]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if r, ok := x.m[name]; ok {
		return r, nil
	}
	return nil, errors.New("NXDOMAIN")
}

func (x *txtMap) setTXT(name string, r ...string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.m[name] = r
}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	k := make([]byte, secret.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	kr, err := secret.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), store.Options{Driver: "sqlite", Path: path, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCache: one fetch per id and max_age; an id change refetches; a
// failed refetch keeps the cached enforce policy (RFC 8461 §5.1), as does
// a TXT record that vanishes; a new Cache on the same store (a restart, or
// another node) fetches nothing; two TXT records are no policy.
func TestCache(t *testing.T) {
	ca := testpeer.NewTLSTestCA(t)
	ps := startPolicyServer(t, ca)
	ps.set("mta-sts.good.test", serve(goodPolicy, "text/plain"))
	txt := &txtMap{m: map[string][]string{}}
	txt.setTXT("_mta-sts.good.test", "v=STSv1; id=one")
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	dbPath := filepath.Join(t.TempDir(), "sealgate.db")
	st := openStore(t, dbPath)
	newCache := func() *Cache {
		return &Cache{TXT: txt, Fetch: &Fetcher{Roots: ca.Pool, Resolve: loopback, Port: ps.port, Timeout: 5 * time.Second},
			Store: st, Now: func() time.Time { return now }}
	}
	c := newCache()
	ctx := context.Background()
	policy := func(c *Cache, domain string) string {
		t.Helper()
		mode, mx, err := c.Policy(ctx, domain)
		if err != nil {
			t.Fatal(err)
		}
		return mode + " " + strings.Join(mx, ",")
	}
	steps := []struct {
		name    string
		before  func()
		cache   func() *Cache
		want    string
		fetches int
	}{
		{"first lookup fetches", nil, nil, "enforce mx1.good.test", 1},
		{"same id: cached", nil, nil, "enforce mx1.good.test", 1},
		{"another node on the same store: cached", nil, newCache, "enforce mx1.good.test", 1},
		{"id changed: refetched", func() {
			txt.setTXT("_mta-sts.good.test", "v=STSv1; id=two")
			ps.set("mta-sts.good.test", serve(strings.Replace(goodPolicy, "mx1", "mx2", 1), "text/plain"))
		}, nil, "enforce mx2.good.test", 2},
		{"id changed, policy host now lies: cached enforce kept", func() {
			txt.setTXT("_mta-sts.good.test", "v=STSv1; id=three")
			ps.set("mta-sts.good.test", serve("version: STSv1\nmode: none\nmax_age: 1\n", "text/html"))
		}, nil, "enforce mx2.good.test", 3},
		{"TXT record gone: cached enforce kept", func() { txt.setTXT("_mta-sts.good.test") }, nil, "enforce mx2.good.test", 3},
		{"after max_age with no TXT: no policy", func() { now = now.Add(86401 * time.Second) }, nil, " ", 3},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		if s.cache != nil {
			c = s.cache()
		}
		if got := policy(c, "GOOD.test."); got != s.want {
			t.Fatalf("%s: policy %q, want %q", s.name, got, s.want)
		}
		if n := ps.count("mta-sts.good.test"); n != s.fetches {
			t.Fatalf("%s: %d fetches, want %d", s.name, n, s.fetches)
		}
	}

	// Two STSv1 records: no policy, and the host is not even asked.
	ps.set("mta-sts.two.test", serve(goodPolicy, "text/plain"))
	txt.setTXT("_mta-sts.two.test", "v=STSv1; id=a", "v=STSv1; id=b")
	if got := policy(c, "two.test"); got != " " {
		t.Fatalf("two TXT records gave policy %q", got)
	}
	if n := ps.count("mta-sts.two.test"); n != 0 {
		t.Fatalf("two TXT records: policy host asked %d times", n)
	}
}
