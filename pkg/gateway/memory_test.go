package gateway

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/smime"
)

// realSigner and realEncrypter are the production pkg/smime calls behind
// the pipeline's interfaces (cmd/sealgate adds key lookup only), so that
// the memory figure measures the copies that really exist.
type realSigner struct {
	key  crypto.Signer
	cert *x509.Certificate
}

func (s realSigner) Sign(_ context.Context, _ string, msg []byte) ([]byte, error) {
	return smime.Sign(msg, s.key, []*x509.Certificate{s.cert}, nil)
}

type realEncrypter struct{}

func (realEncrypter) Encrypt(_ context.Context, msg []byte, certs []any) ([]byte, error) {
	rs := make([]smime.Recipient, len(certs))
	for i, c := range certs {
		rs[i] = smime.Recipient{Cert: c.(*x509.Certificate)}
	}
	return smime.Encrypt(msg, rs, nil)
}

func rsaCert(tb testing.TB, email string) (*rsa.PrivateKey, *x509.Certificate) {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(time.Now().UnixNano()),
		Subject:        pkix.Name{CommonName: email},
		EmailAddresses: []string{email},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(time.Hour),
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return key, cert
}

// peakHeap samples the live heap while f runs and returns the peak above
// what was live before. The GC runs at GOGC=10 meanwhile, so that the
// sampled heap is close to what is reachable rather than what awaits
// collection.
func peakHeap(f func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var peak atomic.Uint64
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	f()
	close(stop)
	<-stopped
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

// BenchmarkProcessMemory10MB: what one 10 MB message costs in memory while
// the pipeline signs and S/MIME-encrypts it (RSA-2048), measured as the
// peak of the live heap above the baseline; peak-x is that peak over the
// message size, the figure Queue's memFactor budgets (the message read from
// the spool is counted: it is allocated inside the measured section).
func BenchmarkProcessMemory10MB(b *testing.B) {
	const size = 10 << 20
	key, cert := rsaCert(b, "alice@org.test")
	_, rcptCert := rsaCert(b, "carol@ext.test")
	p := &Pipeline{Hostname: "gw.test",
		Decider: fakeDecider{"*": {Rule: "all", Action: ActionDeliver, Method: MethodSMIME, MustEncrypt: true}},
		Finder:  certFinder{"carol@ext.test": rcptCert},
		Signer:  realSigner{key, cert}, Encrypter: realEncrypter{}}
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,", 1) + "\r\n"
	body := "From: alice@org.test\r\nTo: carol@ext.test\r\nSubject: big\r\n\r\n" + strings.Repeat(line, size/len(line))
	b.SetBytes(int64(len(body)))
	var peak uint64
	for b.Loop() {
		p := peakHeap(func() {
			msg := []byte(body) // the worker's io.ReadAll of the spool file
			plan, err := p.Process(context.Background(), &Envelope{}, []string{"carol@ext.test"}, msg)
			if err != nil || len(plan.Parcels) != 1 {
				b.Fatalf("plan %+v, err %v", plan, err)
			}
			runtime.KeepAlive(msg) // the worker keeps it while relaying
		})
		peak = max(peak, p)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-MB")
	b.ReportMetric(float64(peak)/float64(len(body)), "peak-x")
}

type certFinder map[string]*x509.Certificate

func (f certFinder) Find(_ context.Context, email string) (any, bool, error) {
	c, ok := f[email]
	if !ok {
		return nil, false, nil
	}
	return c, true, nil
}

func TestMarkOwned(t *testing.T) {
	p := &Pipeline{Hostname: "gw.test"}
	want := LoopHeader + ": gw.test\r\nSubject: s\r\n\r\nbody\r\n"
	msg := "Subject: s\r\n\r\nbody\r\n"
	tests := []struct {
		name    string
		spare   int
		inPlace bool
	}{
		{name: "spare capacity: shifted in place", spare: 64, inPlace: true},
		{name: "exactly enough capacity", spare: len(LoopHeader + ": gw.test\r\n"), inPlace: true},
		{name: "too little capacity: copied", spare: 3},
		{name: "no spare capacity: copied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf := append(make([]byte, 0, len(msg)+tc.spare), msg...)
			got := p.markOwned(buf)
			if string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			if same := &got[0] == &buf[:1][0]; same != tc.inPlace {
				t.Errorf("in place: %v, want %v", same, tc.inPlace)
			}
		})
	}
}

// The pipeline shifts only buffers it owns: the caller's message (which
// the queue still needs for bounces and held copies) is never changed,
// whatever the outcome.
func TestPipelineLeavesCallersMessageAlone(t *testing.T) {
	key, cert := rsaCert(t, "alice@org.test")
	_, rcptCert := rsaCert(t, "carol@ext.test")
	for _, d := range []Decision{
		{Rule: "smime", Action: ActionDeliver, Method: MethodSMIME, MustEncrypt: true},
		{Rule: "signed", Action: ActionDeliver, Method: MethodNone},
		{Rule: "plain", Action: ActionDeliver, Method: MethodNone, Sign: SignNever},
		{Rule: "internal", Action: ActionPass},
	} {
		t.Run(d.Rule, func(t *testing.T) {
			p := &Pipeline{Hostname: "gw.test", Decider: fakeDecider{"*": d}, Finder: certFinder{"carol@ext.test": rcptCert},
				Signer: realSigner{key, cert}, Encrypter: realEncrypter{}}
			orig := "From: alice@org.test\r\nTo: carol@ext.test\r\nSubject: s\r\n\r\n" + strings.Repeat("line of text\r\n", 1000)
			// Spare capacity invites an in-place shift that must not happen.
			msg := append(make([]byte, 0, len(orig)+4096), orig...)
			plan, err := p.Process(context.Background(), &Envelope{}, []string{"carol@ext.test"}, msg)
			if err != nil || len(plan.Parcels) != 1 {
				t.Fatalf("plan %+v, err %v", plan, err)
			}
			if string(msg) != orig {
				t.Fatal("Process changed the caller's message")
			}
			data := plan.Parcels[0].Data
			if !strings.HasPrefix(string(data), LoopHeader+": gw.test\r\n") || strings.Count(string(data), LoopHeader) != 1 {
				t.Fatalf("%s parcel does not start with one loop guard:\n%.300s", d.Rule, data)
			}
		})
	}
}
