package portal

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pacedRate is the load of the latency benchmarks: requests per second,
// sent on a fixed schedule whether or not earlier ones have finished
// (open loop), so a slow answer shows in the percentiles instead of
// slowing the load down.
const pacedRate = 200

// portalServer serves f's portal over TLS on loopback and returns a
// client with a cookie jar (the CSRF cookie is __Host-, Secure).
func portalServer(b *testing.B, f *fixture) (*httptest.Server, *http.Client) {
	b.Helper()
	srv := httptest.NewUnstartedServer(f.h)
	srv.EnableHTTP2 = false
	srv.StartTLS()
	b.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	tr.MaxIdleConnsPerHost = 64
	return srv, &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second}
}

// paced sends b.N requests at pacedRate and reports p50, p99 and max in
// milliseconds. do returns an error for an unexpected answer.
func paced(b *testing.B, do func(i int) error) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Value
	tick := time.NewTicker(time.Second / pacedRate)
	defer tick.Stop()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-tick.C
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			start := time.Now()
			if err := do(i); err != nil {
				failed.Store(err)
			}
			d := time.Since(start)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(0, "ns/op") // the pace, not the handler, sets the time per request
}

// BenchmarkReplyPagePaced is GET /r/{token} at 200 requests/s over TLS:
// lockout read, token checked (its subject opened), page rendered.
func BenchmarkReplyPagePaced(b *testing.B) {
	f := newFixture(b)
	tok := f.replyLink(b, bob, bobPW, origMsgID, "Quarterly figures")
	srv, hc := portalServer(b, f)
	paced(b, func(int) error {
		resp, err := hc.Get(srv.URL + "/r/" + tok)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET: %d", resp.StatusCode)
		}
		return nil
	})
}

// BenchmarkReplyPasswordCheckPaced is a reply POST at 200 requests/s:
// CSRF, the stored password opened and compared, the reply written into
// the (in-memory) outbox, the answer page. Requests are spread over 500
// links, so the per-link reply limit is never reached.
func BenchmarkReplyPasswordCheckPaced(b *testing.B) {
	f := newFixture(b)
	toks := make([]string, 500)
	for i := range toks {
		toks[i] = f.replyLink(b, "r"+strconv.Itoa(i)+"@partner.example", bobPW, origMsgID, "Quarterly figures")
	}
	srv, hc := portalServer(b, f)
	resp, err := hc.Get(srv.URL + "/r/" + toks[0])
	if err != nil {
		b.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		b.Fatal("no csrf field")
	}
	body, ct := replyForm{csrf: string(m[1]), password: bobPW, text: "Thanks."}.body(b)
	form, _ := io.ReadAll(body)
	paced(b, func(i int) error {
		resp, err := hc.Post(srv.URL+"/r/"+toks[i%len(toks)], ct, bytes.NewReader(form))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST: %d", resp.StatusCode)
		}
		return nil
	})
}

// fileOutbox writes each reply to a file, as the spool does.
type fileOutbox struct{ dir string }

func (o fileOutbox) QueueReply(_ context.Context, _, _ string, r io.Reader) error {
	f, err := os.CreateTemp(o.dir, "reply-*.eml")
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, r)
	return err
}

// BenchmarkReply20MB uploads a 20 MB attachment through a real TLS
// server into an outbox that writes it to disk, and reports how much the
// process grew: peak heap in use (sampled every millisecond) and peak RSS
// (VmHWM after resetting it) above where they were before the upload.
// The client builds its body on the fly, so it adds nothing either.
func BenchmarkReply20MB(b *testing.B) {
	const size = 20 << 20
	f := newFixture(b)
	f.srv.Outbox = fileOutbox{dir: b.TempDir()}
	f.srv.MaxReplyBytes = 30 << 20
	tok := f.replyLink(b, bob, bobPW, origMsgID, "Quarterly figures")
	srv, hc := portalServer(b, f)
	resp, err := hc.Get(srv.URL + "/r/" + tok)
	if err != nil {
		b.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := string(csrfRE.FindSubmatch(page)[1])
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB, not all zeros
	var heapPeak, rssPeak uint64
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		// A link per upload: the per-link reply limit is not measured here.
		tok = f.replyLink(b, bob, bobPW, origMsgID, "Quarterly figures")
		runtime.GC()
		heap0, rss0 := heapInUse(), rss()
		resetPeakRSS()
		stop := sampleHeap()
		b.StartTimer()
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		go func() {
			_ = mw.WriteField("csrf", csrf)
			_ = mw.WriteField("password", bobPW)
			_ = mw.WriteField("text", "The contract, signed.")
			fw, _ := mw.CreateFormFile("files", "contract.bin")
			for n := 0; n < size; n += len(chunk) {
				if _, err := fw.Write(chunk); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
			pw.CloseWithError(mw.Close())
		}()
		resp, err := hc.Post(srv.URL+"/r/"+tok, mw.FormDataContentType(), pr)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("POST: %d", resp.StatusCode)
		}
		b.StopTimer()
		hp := stop()
		if d := sub(hp, heap0); d > heapPeak {
			heapPeak = d
		}
		if d := sub(max(peakRSS(), rss()), rss0); d > rssPeak {
			rssPeak = d
		}
		b.StartTimer()
	}
	b.SetBytes(size)
	b.ReportMetric(float64(heapPeak)/(1<<20), "heap-growth-MB")
	b.ReportMetric(float64(rssPeak)/(1<<20), "rss-growth-MB")
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}

func heapInUse() uint64 {
	s := slices.Clone(heapSample)
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sampleHeap samples the live heap every millisecond until stop, which
// returns the highest value seen.
func sampleHeap() (stop func() uint64) {
	peak := &atomic.Uint64{}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if v := heapInUse(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// rss and peakRSS read VmRSS and VmHWM (bytes) from /proc/self/status;
// resetPeakRSS sets VmHWM back to the current RSS (Linux ≥ 4.0).
func rss() uint64     { return procStatus("VmRSS:") }
func peakRSS() uint64 { return procStatus("VmHWM:") }

func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func procStatus(field string) uint64 {
	f, err := os.Open(filepath.Join("/proc", "self", "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
