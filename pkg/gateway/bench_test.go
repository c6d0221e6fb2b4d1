package gateway

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/secret"
	"github.com/sealgate/sealgate/pkg/store"
)

// BenchmarkSpoolWrite10KB: encrypt + fsync (file and directory) of one
// 10 KB message, the cost every 250 pays.
func BenchmarkSpoolWrite10KB(b *testing.B) {
	sp := testSpool(b)
	msg := bytes.Repeat([]byte("0123456789abcdef\r\n"), 10240/18)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		env := &Envelope{ID: NewID(), From: "a@org.test", Recipients: []Recipient{{Addr: "b@ext.test"}}}
		if _, err := sp.Write(env, newDataValidator(bytes.NewReader(msg), "gw")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAccept10KB: spool plus the queue entry in SQLite, i.e. the
// whole durable-accept path behind a 250.
func BenchmarkAccept10KB(b *testing.B) {
	q, _ := testQueue(b, passAll{}, &recordingRelay{})
	q.init()
	msg := strings.Repeat("0123456789abcdef\r\n", 10240/18)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		env := &Envelope{From: "a@org.test", Recipients: []Recipient{{Addr: "b@ext.test"}}}
		if err := q.Accept(context.Background(), env, strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
		select {
		case <-q.wake:
		default:
		}
	}
}

// BenchmarkAcceptParallel10KB: the durable-accept path behind a 250 with
// 20 sessions at once (the load run's -s 20), with the queue metadata
// written by the plain store (one commit and fsync per message) and by
// store.GroupCommit (concurrent accepts share a commit).
func BenchmarkAcceptParallel10KB(b *testing.B) {
	for _, mode := range []string{"plain", "group"} {
		b.Run(mode, func(b *testing.B) {
			q, _ := testQueue(b, passAll{}, &recordingRelay{})
			if mode == "group" {
				gc := store.NewGroupCommit(q.Store.(*store.Store))
				defer gc.Close()
				q.Store = gc
			}
			q.init() // not running: once the wake channel is full, Accept skips it
			msg := strings.Repeat("0123456789abcdef\r\n", 10240/18)
			b.SetBytes(int64(len(msg)))
			b.SetParallelism(10) // 20 sessions on 2 CPUs
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					env := &Envelope{From: "a@org.test", Recipients: []Recipient{{Addr: "b@ext.test"}}}
					if err := q.Accept(context.Background(), env, strings.NewReader(msg)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSMTPRelay10KB: one 10 KB message to a smart host (the test
// sink, in process), on a new connection each time (connect, EHLO, QUIT)
// and on a pooled one (RSET, EHLO again: go-smtp's client repeats EHLO
// after RSET).
func BenchmarkSMTPRelay10KB(b *testing.B) {
	msg := bytes.Repeat([]byte("0123456789abcdef\r\n"), 10240/18)
	for _, mode := range []struct {
		name    string
		maxIdle int
	}{{"fresh", -1}, {"pooled", 0}} {
		b.Run(mode.name, func(b *testing.B) {
			sink := testpeer.StartSink(b, testpeer.SinkOptions{})
			r := &SMTPRelay{Addr: sink.Addr, Hostname: "gw.test", TLS: "none", MaxIdle: mode.maxIdle}
			defer r.Close()
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if errs := r.Deliver(context.Background(), Delivery{From: "a@org.test", Rcpts: []string{"b@ext.test"}, Data: msg}); errs[0] != nil {
					b.Fatal(errs[0])
				}
			}
		})
	}
}

// BenchmarkAcceptPostgresParallel10KB: the durable-accept path with 20
// sessions on the test's PostgreSQL (fsync off there, so this measures the
// work, not a disk): the message in a spool file and its entry in the
// database (a single node), against message and entry in one row (a
// cluster, store.driver = "postgres"). Both through store.GroupCommit.
func BenchmarkAcceptPostgresParallel10KB(b *testing.B) {
	pg := testpeer.StartPostgres(b)
	for _, mode := range []string{"spool-file", "in-database"} {
		b.Run(mode, func(b *testing.B) {
			q, _ := testQueue(b, passAll{}, &recordingRelay{})
			st, err := store.Open(context.Background(), store.Options{Driver: "postgres", DSN: pg.NewDatabase(b), Keyring: q.Spool.kr.(*secret.Keyring)})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			gc := store.NewGroupCommit(st)
			defer gc.Close()
			q.Store = gc
			if mode == "in-database" {
				q.Messages = gc
			}
			q.init()
			msg := strings.Repeat("0123456789abcdef\r\n", 10240/18)
			b.SetBytes(int64(len(msg)))
			b.SetParallelism(10)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					env := &Envelope{From: "a@org.test", Recipients: []Recipient{{Addr: "b@ext.test"}}}
					if err := q.Accept(context.Background(), env, strings.NewReader(msg)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
