package pdfmail

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// peakHeap samples the heap's live objects while f runs and returns the
// highest value above the heap in use before f started. The collection
// that sets the baseline runs with the timer stopped, and the sampling
// reads runtime/metrics, which (unlike ReadMemStats) does not stop the
// world: neither is part of what a seal costs. cpu is the process's CPU
// time while f ran (see reportCPU).
func peakHeap(b *testing.B, f func()) (peakBytes uint64, cpu time.Duration) {
	b.StopTimer()
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := heap()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			if h := heap(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	b.StartTimer()
	start := processCPU()
	f()
	cpu = processCPU() - start
	b.StopTimer()
	close(done)
	wg.Wait()
	b.StartTimer()
	if peak.Load() < base {
		return 0, cpu
	}
	return peak.Load() - base, cpu
}

func benchSeal(b *testing.B, msg []byte, inputBytes int) {
	s := &Sealer{Language: "de"}
	pw := []byte("bench-password")
	var maxPeak uint64
	b.SetBytes(int64(inputBytes))
	b.ResetTimer()
	var cpu time.Duration
	for range b.N {
		peak, c := peakHeap(b, func() {
			if _, err := s.Seal(context.Background(), bytes.NewReader(msg), pw, io.Discard); err != nil {
				b.Fatal(err)
			}
		})
		maxPeak = max(maxPeak, peak)
		cpu += c
	}
	reportCPU(b, cpu)
	b.ReportMetric(float64(maxPeak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(maxPeak)/float64(inputBytes), "peak/input")
}

// reportCPU reports cpu, the process's CPU time (user + system, all
// threads: the seal, its key derivation and the collector) over the
// operations, per operation: on a machine shared with other work, wall
// time per operation says more about the load than about the code.
func reportCPU(b *testing.B, cpu time.Duration) {
	if cpu < 0 || processCPU() < 0 {
		return
	}
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// BenchmarkSeal10KBBody: a 10 KB text letter, no attachments.
func BenchmarkSeal10KBBody(b *testing.B) {
	var body strings.Builder
	for body.Len() < 10*1024 {
		body.WriteString(multilingual[body.Len()%len(multilingual)] + "\r\n")
	}
	msg := buildMessage("Bench", testPart{contentType: "text/plain; charset=utf-8", body: []byte(body.String())})
	benchSeal(b, msg, body.Len())
}

// BenchmarkSeal25MBAttachments: a short letter with 25 MB of random
// (incompressible, the worst case) attachments, as five files of 5 MB and
// as one file of 25 MB.
func BenchmarkSeal25MBAttachments(b *testing.B) {
	for _, files := range []int{5, 1} {
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			parts := []testPart{{contentType: "text/plain; charset=utf-8", body: []byte("Anbei.\r\n")}}
			total := 0
			for i := range files {
				data := make([]byte, 25<<20/files)
				if _, err := rand.Read(data); err != nil {
					b.Fatal(err)
				}
				total += len(data)
				parts = append(parts, testPart{contentType: "application/octet-stream", filename: fmt.Sprintf("teil%d.bin", i+1), body: data})
			}
			msg := buildMessage("Bench", parts...)
			benchSeal(b, msg, total)
		})
	}
}

// BenchmarkSealOnePage: a one-page text mail sealed through the font
// chain (built-in font, then the system's fonts): Latin only (DejaVu
// alone), mixed scripts that pull in fallback fonts (Chinese, Japanese,
// Korean, symbols), Arabic and Hebrew (shaping and bidi), emoji (an astral
// font rewritten and embedded), Hindi and Thai (shaped glyph by glyph);
// the system fonts are scanned before the
// timer starts, as serve does at startup.
func BenchmarkSealOnePage(b *testing.B) {
	builtinChain()
	tests := []struct{ name, line string }{
		{"latin", "Sehr geehrte Damen und Herren, anbei das Angebot über 1.234,56 € für Größe XL."},
		{"mixed-scripts", "Grüße, Привет, Γεια σας, 你好世界, こんにちは, 안녕하세요 ✓ ☺"},
		// Joined, right to left, with the ToUnicode map for the forms.
		{"arabic", "السلام عليكم ورحمة الله وبركاته، نرجو منكم مراجعة العرض المرفق قبل الأسبوع القادم."},
		{"hebrew-mixed", "הפגישה עם John Smith תתקיים ב-15 במרץ בשעה 10:30 (חדר 4), מחיר 1,234.50 ₪."},
		{"emoji", "Great work 👍 see you tonight 🎉 – thanks ☺ and 🏁 at 10:30"},
		// Shaped with the fonts' OpenType tables (hbshape.go).
		{"hindi", "नमस्ते, कृपया संलग्न प्रस्ताव देखें और सप्ताह के अंत तक अपनी टिप्पणियाँ भेजें।"},
		{"thai", "สวัสดีครับ กรุณาตรวจสอบข้อเสนอที่แนบมาและส่งความคิดเห็นภายในสิ้นสัปดาห์นี้"},
	}
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			var body strings.Builder
			for range 30 {
				body.WriteString(tc.line + "\r\n")
			}
			msg := buildMessage("Bench", testPart{contentType: "text/plain; charset=utf-8", body: []byte(body.String())})
			benchSeal(b, msg, body.Len())
		})
	}
}

// BenchmarkSealOnePageParallel seals the Latin one-page mail from every
// P at once with one Sealer, as the gateway does: run it with -race to
// see that concurrent seals share no mutable state (fonts, key buffers).
func BenchmarkSealOnePageParallel(b *testing.B) {
	builtinChain()
	var body strings.Builder
	for range 30 {
		body.WriteString("Sehr geehrte Damen und Herren, anbei das Angebot über 1.234,56 € für Größe XL.\r\n")
	}
	msg := buildMessage("Bench", testPart{contentType: "text/plain; charset=utf-8", body: []byte(body.String())})
	s := &Sealer{Language: "de"}
	b.ResetTimer()
	start := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var out bytes.Buffer
			info, err := s.Seal(context.Background(), bytes.NewReader(msg), []byte("bench-password"), &out)
			if err != nil {
				b.Error(err)
				return
			}
			if info.PDFBytes == 0 || !bytes.Contains(out.Bytes(), []byte("application/pdf")) {
				b.Errorf("no PDF in the carrier (%d bytes)", out.Len())
				return
			}
		}
	})
	reportCPU(b, processCPU()-start)
}
