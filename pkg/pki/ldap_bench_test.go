package pki_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/pki"
)

// BenchmarkLDAPPublish publishes one certificate per user to slapd from
// 4 goroutines (a rollout's workers): publishes/s is the figure, and
// binds/op shows whether connections are reused. Run with e.g.
// -benchtime=2000x.
func BenchmarkLDAPPublish(b *testing.B) {
	const users = 200
	dir := b.TempDir()
	certFile, keyFile := testpeer.WriteServerCert(b, dir, "ldap.example.test")
	tlsCfg := testpeer.TrustFile(b, certFile)
	slapd := testpeer.StartSlapd(b, testpeer.SlapdOptions{Suffix: suffix, LDIF: publishLDIF(users), TLSCertFile: certFile, TLSKeyFile: keyFile})
	for _, tc := range []struct {
		name, addr, scheme string
		tls                *tls.Config
	}{
		{"ldap", slapd.Addr, "ldap", nil},
		{"ldaps", strings.TrimPrefix(slapd.LDAPSURL, "ldaps://"), "ldaps", tlsCfg},
	} {
		b.Run(tc.name, func(b *testing.B) {
			proxy := startCountingProxy(b, tc.addr)
			d, err := pki.NewLDAPDirectory(pki.LDAPConfig{URL: tc.scheme + "://" + proxy.Addr(), BindDN: slapd.RootDN, BindPassword: slapd.RootPW,
				BaseDN: suffix, Groups: []string{"unused"}, Timeout: 5 * time.Second, TLS: tc.tls})
			if err != nil {
				b.Fatal(err)
			}
			benchPublish(b, d, users)
			b.ReportMetric(float64(proxy.Accepted())/float64(b.N), "binds/op")
		})
	}
}

func benchPublish(b *testing.B, d *pki.LDAPDirectory, users int) {
	cert := selfSigned(b, "bench@example.test")
	ctx := context.Background()
	b.SetParallelism(4)
	var next atomicCounter
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.add()%users + 1
			if err := d.Publish(ctx, pki.User{Email: userMail(i), DN: userDN(i)}, []*x509.Certificate{cert}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add() int { return int(c.n.Add(1)) }
