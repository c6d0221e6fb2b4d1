package pdfmail

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// peakHeap samples HeapAlloc while f runs and returns the highest value
// above the heap in use before f started.
func peakHeap(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	if peak < base {
		return 0
	}
	return peak - base
}

func benchSeal(b *testing.B, msg []byte, inputBytes int) {
	s := &Sealer{Language: "de"}
	pw := []byte("bench-password")
	var maxPeak uint64
	b.SetBytes(int64(inputBytes))
	b.ResetTimer()
	for range b.N {
		peak := peakHeap(func() {
			if _, err := s.Seal(context.Background(), bytes.NewReader(msg), pw, io.Discard); err != nil {
				b.Fatal(err)
			}
		})
		maxPeak = max(maxPeak, peak)
	}
	b.ReportMetric(float64(maxPeak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(maxPeak)/float64(inputBytes), "peak/input")
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
