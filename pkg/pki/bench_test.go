package pki_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/pki/embeddedca"
	"github.com/sealgate/sealgate/pkg/pki/internal/pkitest"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// BenchmarkRollout issues certificates for b.N new users in one rollout
// (embedded CA, SQLite store, the default parallelism, group-committed writes as in `pki rollout`): users/s is the
// figure the issue asks for. Run with e.g. -benchtime=500x.
func BenchmarkRollout(b *testing.B) {
	for _, kt := range []pki.KeyType{pki.RSA2048, pki.P256} {
		b.Run(string(kt), func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			sealer := pkitest.NewSealer()
			if _, err := embeddedca.Init(filepath.Join(dir, "ca"), sealer, embeddedca.InitOptions{KeyBits: 3072}); err != nil {
				b.Fatal(err)
			}
			ca, err := embeddedca.Open(filepath.Join(dir, "ca"), sealer, embeddedca.Options{CRLURL: "http://127.0.0.1/crl"})
			if err != nil {
				b.Fatal(err)
			}
			kr, err := secret.LoadOrCreateKeyring(filepath.Join(dir, "master.key"))
			if err != nil {
				b.Fatal(err)
			}
			st, err := store.Open(ctx, store.Options{Driver: "sqlite", Path: filepath.Join(dir, "sealgate.db"), Keyring: kr})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			src := &pki.StaticSource{Groups: []string{"g"}}
			for i := range b.N {
				src.List = append(src.List, pki.StaticUser{Email: fmt.Sprintf("user%06d@example.org", i), Groups: []string{"g"}})
			}
			gc := store.NewGroupCommit(st)
			gc.Linger = 5 * time.Millisecond // as `pki rollout` and serve's sync do
			defer gc.Close()
			m := &pki.Manager{Store: gc, Issuer: ca, Users: src, KeyType: kt, Validity: 8760 * time.Hour, RenewBefore: 720 * time.Hour}
			b.ResetTimer()
			start := time.Now()
			res, err := m.Sync(ctx, pki.ApplyOptions{})
			elapsed := time.Since(start)
			b.StopTimer()
			if err != nil || res.Issued != b.N || res.Failed != 0 {
				b.Fatalf("rollout: %+v %v", res, err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "users/s")
		})
	}
}

// BenchmarkBareKeygenSign is the ceiling the rollout is measured against:
// generate a key and sign a certificate for it with the issuing key,
// nothing else, on all cores.
func BenchmarkBareKeygenSign(b *testing.B) {
	caKey, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		b.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(der)
	for _, kt := range []pki.KeyType{pki.RSA2048, pki.P256} {
		b.Run(string(kt), func(b *testing.B) {
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k, err := kt.Generate()
					if err != nil {
						b.Error(err)
						return
					}
					sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
					tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "u"}, EmailAddresses: []string{"u@example.org"},
						NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}
					if _, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, k.Public(), caKey); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "certs/s")
		})
	}
}
