package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/pkg/pki"
	"github.com/sealgate/sealgate/pkg/store"
)

// gatedCertStore answers Certificates once gate opens, counting the reads.
type gatedCertStore struct {
	pki.Store // nil: nothing else is called
	gate      chan struct{}
	reads     atomic.Int32
	serial    atomic.Value // string: the serial the next read returns
}

func (g *gatedCertStore) Certificates(_ context.Context, email string) ([]store.Certificate, error) {
	g.reads.Add(1)
	<-g.gate
	return []store.Certificate{{Serial: g.serial.Load().(string), Email: email, State: store.CertActive,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}}, nil
}

// TestSignerSharesConcurrentCertificateLookups: messages of one sender
// processed together share one store read; a lookup after it reads again
// (a renewal in between is seen by the next message).
func TestSignerSharesConcurrentCertificateLookups(t *testing.T) {
	st := &gatedCertStore{gate: make(chan struct{})}
	st.serial.Store("01")
	s := &pkiSigner{m: &pki.Manager{Store: st}}
	const n = 8
	var wg sync.WaitGroup
	serials := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.current(context.Background(), "alice@example.org")
			if err != nil {
				t.Error(err)
				return
			}
			serials <- c.Serial
		}()
	}
	// Let the callers pile up on the first read, then answer it.
	deadline := time.Now().Add(10 * time.Second)
	for st.reads.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(st.gate)
	wg.Wait()
	close(serials)
	for sn := range serials {
		if sn != "01" {
			t.Fatalf("serial %s", sn)
		}
	}
	if r := st.reads.Load(); r >= n {
		t.Fatalf("%d store reads for %d concurrent lookups: none shared", r, n)
	}
	// A renewal, then the next message: a new read sees it.
	st.serial.Store("02")
	c, err := s.current(context.Background(), "alice@example.org")
	if err != nil || c.Serial != "02" {
		t.Fatalf("after renewal: serial %q, err %v", c.Serial, err)
	}
}
