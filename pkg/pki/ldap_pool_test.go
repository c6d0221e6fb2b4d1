package pki_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
)

// publishLDIF is n plain users under ou=people for publishing tests.
func publishLDIF(n int) string {
	var b strings.Builder
	b.WriteString("dn: ou=people," + suffix + "\nobjectClass: organizationalUnit\nou: people\n\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "dn: %s\nobjectClass: inetOrgPerson\nuid: u%03d\ncn: User %03d\nsn: %03d\nmail: %s\n\n", userDN(i), i, i, i, userMail(i))
	}
	return b.String()
}

// selfSigned is a throwaway certificate for email: what is published
// matters here, not who issued it.
func selfSigned(t testing.TB, email string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: email},
		EmailAddresses: []string{email}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLDAPPublishReusesConnections: a rollout's workers publish over a
// few kept connections instead of one bind per user; a connection the
// server cut is replaced without failing the user; a hanging server gives
// a timeout error, and the next publish after it recovers works.
func TestLDAPPublishReusesConnections(t *testing.T) {
	const users, workers = 60, 4
	slapd := testpeer.StartSlapd(t, testpeer.SlapdOptions{Suffix: suffix, LDIF: publishLDIF(users)})
	proxy := testpeer.StartRecordingProxy(t, slapd.Addr)
	d, err := pki.NewLDAPDirectory(pki.LDAPConfig{URL: proxy.URL(), BindDN: slapd.RootDN, BindPassword: slapd.RootPW, AllowPlaintextBind: true,
		BaseDN: suffix, Groups: []string{"unused"}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	certs := map[int]*x509.Certificate{}
	for i := 1; i <= users; i++ {
		certs[i] = selfSigned(t, userMail(i))
	}
	publish := func(t *testing.T, from, to int) {
		t.Helper()
		work := make(chan int)
		errs := make(chan error, to-from+1)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					errs <- d.Publish(ctx, pki.User{Email: userMail(i), DN: userDN(i)}, []*x509.Certificate{certs[i]})
				}
			}()
		}
		for i := from; i <= to; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	published := func(t *testing.T) int {
		t.Helper()
		return strings.Count(slapd.Search(t, "ou=people,"+suffix, "(userCertificate;binary=*)", "dn"), "dn: ")
	}

	t.Run("workers share connections", func(t *testing.T) {
		publish(t, 1, 40)
		if n := published(t); n != 40 {
			t.Fatalf("%d of 40 entries hold a certificate", n)
		}
		if n := proxy.Accepted(); n < 1 || n > workers {
			t.Fatalf("40 publishes by %d workers used %d connections, want at most %d", workers, n, workers)
		}
	})
	t.Run("server cuts connections", func(t *testing.T) {
		before := proxy.Accepted()
		proxy.DropAll()
		publish(t, 41, users)
		if n := published(t); n != users {
			t.Fatalf("%d of %d entries hold a certificate", n, users)
		}
		if n := proxy.Accepted(); n == before {
			t.Fatal("no new connection after the server cut them all")
		}
	})
	t.Run("unpublish on a kept connection", func(t *testing.T) {
		before := proxy.Accepted()
		if err := d.Unpublish(ctx, userMail(7), []*x509.Certificate{certs[7]}); err != nil {
			t.Fatal(err)
		}
		if out := slapd.Search(t, userDN(7), "(objectClass=*)", "userCertificate;binary", "userSMIMECertificate"); strings.Contains(out, "ertificate") {
			t.Fatalf("u007 still published:\n%s", out)
		}
		if n := proxy.Accepted(); n != before {
			t.Fatalf("unpublish dialed %d new connections with idle ones kept", n-before)
		}
	})
	t.Run("hanging server times out, then recovers", func(t *testing.T) {
		slapd.Freeze(t)
		err := d.Publish(ctx, pki.User{Email: userMail(8), DN: userDN(8)}, []*x509.Certificate{certs[8]})
		slapd.Thaw(t)
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("publish to a hanging server: %v, want a timeout", err)
		}
		if err := d.Publish(ctx, pki.User{Email: userMail(7), DN: userDN(7)}, []*x509.Certificate{certs[7]}); err != nil {
			t.Fatalf("publish after the server recovered: %v", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := d.Publish(cctx, pki.User{Email: userMail(9), DN: userDN(9)}, []*x509.Certificate{certs[9]}); !errors.Is(err, context.Canceled) {
			t.Fatalf("publish with a cancelled context: %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		d.Close()
		if err := d.Publish(ctx, pki.User{Email: userMail(9), DN: userDN(9)}, []*x509.Certificate{certs[9]}); err == nil {
			t.Fatal("publish after Close succeeded")
		}
	})
}
