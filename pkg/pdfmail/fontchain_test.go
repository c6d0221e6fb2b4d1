package pdfmail

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpeer"
	"github.com/sealgate/sealgate/pkg/config"
)

func TestBuiltinFontCovers(t *testing.T) {
	cov, err := fontCoverage(fontRegular)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		r    rune
		want bool
	}{
		{'A', true}, {'ß', true}, {'€', true}, {'Ω', true}, {'Ж', true}, {'„', true}, {replacementRune, true},
		{'中', false}, {'한', false}, {0x1F44D, false}, {-1, false}, {0x110000, false},
	}
	for _, tc := range tests {
		if got := cov.has(tc.r); got != tc.want {
			t.Errorf("DejaVu has %U = %v, want %v", tc.r, got, tc.want)
		}
	}
}

// TestFontCoverageRefusesHostileFonts plays whoever put a file into a
// configured font directory: truncated and lying tables must give an
// error, never a panic or an out-of-range read.
func TestFontCoverageRefusesHostileFonts(t *testing.T) {
	// A cmap whose format-4 subtable claims more segments than the file has.
	lying := append([]byte(nil), fontRegular...)
	off := cmapSubtableOffset(t, lying)
	binary.BigEndian.PutUint16(lying[off+6:], 0xFFFE)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"CFF outlines", append([]byte("OTTO"), make([]byte, 64)...)},
		{"collection", append([]byte("ttcf"), make([]byte, 64)...)},
		{"truncated directory", fontRegular[:40]},
		{"truncated cmap", truncateAt(fontRegular, cmapSubtableOffset(t, fontRegular)+20)},
		{"lying segment count", lying},
		{"no tables", append([]byte{0, 1, 0, 0, 0, 0}, make([]byte, 6)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := fontCoverage(tc.data); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func truncateAt(b []byte, n int) []byte { return append([]byte(nil), b[:n]...) }

// cmapSubtableOffset finds the format-4 subtable the way fontCoverage does
// (independently, for the test to corrupt it).
func cmapSubtableOffset(t *testing.T, data []byte) int {
	t.Helper()
	n := int(binary.BigEndian.Uint16(data[4:]))
	for i := range n {
		rec := 12 + 16*i
		if string(data[rec:rec+4]) == "cmap" {
			cmap := int(binary.BigEndian.Uint32(data[rec+8:]))
			subs := int(binary.BigEndian.Uint16(data[cmap+2:]))
			for j := range subs {
				off := cmap + int(binary.BigEndian.Uint32(data[cmap+8+8*j:]))
				if binary.BigEndian.Uint16(data[off:]) == 4 {
					return off
				}
			}
		}
	}
	t.Fatal("no format-4 cmap")
	return 0
}

func FuzzFontCoverage(f *testing.F) {
	f.Add(fontRegular[:4096])
	f.Add([]byte("true\x00\x01\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cov, err := fontCoverage(data)
		if err == nil && cov == nil {
			t.Fatal("no coverage and no error")
		}
	})
}

// systemCJKFont returns a TrueType font with Chinese, installed by
// scripts/install-peers.sh (fonts-droid-fallback).
func systemCJKFont(t *testing.T) string {
	t.Helper()
	const p = "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"
	if _, err := os.Stat(p); err != nil {
		if testpeer.InCI() {
			t.Fatalf("%s missing: scripts/install-peers.sh installs fonts-droid-fallback", p)
		}
		t.Skipf("%s missing (fonts-droid-fallback)", p)
	}
	return p
}

// TestConfiguredFontsJoinTheChain: pdf.fonts (a directory here) and the
// deprecated pdf.font_file add to the built-in font instead of replacing
// it; without them (and without system fonts) Chinese is replacement
// marks with a warning. The system directories are switched off so that
// only the configured font can supply the glyphs.
func TestConfiguredFontsJoinTheChain(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	testpeer.Require(t, "pdffonts")
	cjk := systemCJKFont(t)
	dir := t.TempDir()
	data, err := os.ReadFile(cjk)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cjk.ttf"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// Not a font: skipped inside a directory.
	if err := os.WriteFile(filepath.Join(dir, "broken.ttf"), []byte("not a font"), 0o600); err != nil {
		t.Fatal(err)
	}
	saved := SystemFontDirs
	SystemFontDirs = nil
	t.Cleanup(func() { SystemFontDirs = saved })

	const latin, chinese = "Grüße aus Köln", "会议定于星期三举行"
	tests := []struct {
		name      string
		cfg       config.PDF
		wantFonts []string
		wantWarn  bool
	}{
		{"pdf.fonts directory", config.PDF{Fonts: []string{dir}}, []string{"+dejavu ", "+cjk1 "}, false},
		{"deprecated pdf.font_file", config.PDF{FontFile: cjk}, []string{"+dejavu ", "+droidsansfallbackfull1 "}, false},
		{"nothing configured, no system fonts", config.PDF{}, []string{"+dejavu "}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sealer{}
			if tc.cfg.FontFile != "" || len(tc.cfg.Fonts) > 0 {
				if err := s.SetFonts(tc.cfg, nil); err != nil {
					t.Fatal(err)
				}
			} else {
				chain, err := buildChain(fontRegular, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				s.chain = chain
			}
			msg := buildMessage("Test", testPart{contentType: "text/plain; charset=utf-8", body: []byte(latin + "\r\n" + chinese + "\r\n")})
			var out bytes.Buffer
			info, err := s.Seal(context.Background(), bytes.NewReader(msg), []byte(testPassword), &out)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(info.Warnings) > 0; got != tc.wantWarn {
				t.Errorf("warnings %v, want some: %v", info.Warnings, tc.wantWarn)
			}
			pdf := filepath.Join(t.TempDir(), "m.pdf")
			if err := os.WriteFile(pdf, extractPDF(t, out.Bytes(), DefaultAttachmentName), 0o600); err != nil {
				t.Fatal(err)
			}
			text := testpeer.PDFText(t, pdf, testPassword, false)
			if !strings.Contains(text, latin) {
				t.Errorf("Latin lost (a configured font must not replace the built-in one):\n%s", text)
			}
			if strings.Contains(text, chinese) == tc.wantWarn {
				t.Errorf("Chinese present = %v, want %v:\n%s", !tc.wantWarn, !tc.wantWarn, text)
			}
			fonts := string(testpeer.MustRun(t, nil, "pdffonts", "-upw", testPassword, pdf))
			for _, f := range tc.wantFonts {
				if !strings.Contains(fonts, f) {
					t.Errorf("pdffonts lacks %s:\n%s", f, fonts)
				}
			}
			// Embedded, tagged as subsets, with ToUnicode maps.
			for _, line := range strings.Split(strings.TrimSpace(fonts), "\n")[2:] {
				if f := strings.Fields(line); len(f) < 7 || f[len(f)-5] != "yes" || f[len(f)-4] != "yes" || f[len(f)-3] != "yes" {
					t.Errorf("font not embedded as a subset with ToUnicode: %s", line)
				}
			}
			// A subset: the 4 MB font is not in the PDF whole.
			if st, err := os.Stat(pdf); err != nil || st.Size() > 200<<10 {
				t.Errorf("PDF of %d bytes: the fonts are not subset (%v)", st.Size(), err)
			}
		})
	}
}

// TestSetFontsRefusesNonFonts: a named file that is no usable font is an
// error at startup, not replacement marks in every mail.
func TestSetFontsRefusesNonFonts(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.ttf")
	if err := os.WriteFile(bad, []byte("OTTO not really"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []config.PDF{{Fonts: []string{bad}}, {FontFile: bad}, {Fonts: []string{filepath.Join(dir, "missing")}}} {
		if err := (&Sealer{}).SetFonts(c, nil); err == nil {
			t.Errorf("%+v accepted", c)
		}
		if _, err := NewSealer(c, nil); err == nil {
			t.Errorf("NewSealer(%+v) accepted", c)
		}
	}
}

// TestFontTheWriterCannotEmbedNeverFailsThePDF plays whoever dropped a
// damaged font into a configured directory: its cmap is sound (so the
// chain picks it for Chinese) but its glyph index points past the end of
// the file, which makes fpdf panic. The mail's PDF is still made, the
// Chinese drawn as replacement marks, with a warning.
func TestFontTheWriterCannotEmbedNeverFailsThePDF(t *testing.T) {
	testpeer.Require(t, "pdftotext")
	data, err := os.ReadFile(systemCJKFont(t))
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.BigEndian.Uint16(data[4:]))
	for i := range n {
		if rec := 12 + 16*i; string(data[rec:rec+4]) == "loca" {
			binary.BigEndian.PutUint32(data[rec+8:], uint32(len(data)-10))
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "damaged.ttf"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	chain, err := buildChain(fontRegular, []string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fonts := 0
	for _, f := range chain.fonts {
		if !f.astral {
			fonts++
		}
	}
	if fonts != 2 {
		t.Fatalf("the damaged font's cmap should pass: %d fonts in the chain", fonts)
	}
	msg := buildMessage("会议", testPart{contentType: "text/plain; charset=utf-8", body: []byte("Grüße 会议\r\n")})
	var out bytes.Buffer
	info, err := (&Sealer{chain: chain}).Seal(context.Background(), bytes.NewReader(msg), []byte(testPassword), &out)
	if err != nil {
		t.Fatalf("a damaged font failed the PDF: %v", err)
	}
	if w := strings.Join(info.Warnings, " "); !strings.Contains(w, "U+4F1A") || !strings.Contains(w, "U+8BAE") {
		t.Errorf("warnings %q do not name the Chinese characters", info.Warnings)
	}
	pdf := filepath.Join(t.TempDir(), "m.pdf")
	if err := os.WriteFile(pdf, extractPDF(t, out.Bytes(), DefaultAttachmentName), 0o600); err != nil {
		t.Fatal(err)
	}
	if text := testpeer.PDFText(t, pdf, testPassword, false); !strings.Contains(text, "Grüße \uFFFD\uFFFD") {
		t.Errorf("want the Latin text and two replacement marks:\n%s", text)
	}
}

func TestPieceEnds(t *testing.T) {
	long := strings.Repeat("x", 150)
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"one two\nthree", []string{"one ", "two\n", "three"}},
		{"会议定", []string{"会", "议", "定"}},
		{"ab会cd ", []string{"ab会", "cd "}},
		{long, []string{long[:64], long[64:128], long[128:]}},
	}
	for _, tc := range tests {
		var got []string
		rs, start := []rune(tc.in), 0
		for _, end := range pieceEnds(rs) {
			got = append(got, string(rs[start:end]))
			start = end
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("pieceEnds(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestAssignKeepsNeighboursFont: the chain's rule on a synthetic chain
// (coverage made up, no files): the first font that has a character,
// except that a character the built-in font lacks stays in the fallback
// font of its run; missing characters become U+FFFD and are counted.
func TestAssignKeepsNeighboursFont(t *testing.T) {
	cov := func(rs string) *coverage {
		c := new(coverage)
		for _, r := range rs {
			c.set(int(r))
		}
		return c
	}
	chain := &fontChain{fonts: []*chainFont{
		{cover: cov("ab,\uFFFD")},
		{cover: cov("。x")},    // earlier in the chain, has 。 only by chance
		{cover: cov("日本。a,")}, // the Japanese font
	}}
	tests := []struct {
		in, want string
		missing  string
	}{
		{"ab", "0:ab", ""},
		{"日本。", "2:日本。", ""},
		{"。日本", "1:。|2:日本", ""},
		{"日本,a", "2:日本|0:,a", ""},
		{"a😀b", "0:a\uFFFDb", "😀"},
		{"日 本", "2:日 本", ""},
	}
	for _, tc := range tests {
		miss := missingRunes{}
		var got []string
		rs := []rune(tc.in)
		fonts := chain.assign(rs, miss)
		for i := 0; i < len(rs); {
			j := i
			for j < len(rs) && fonts[j] == fonts[i] {
				j++
			}
			got = append(got, fmt.Sprintf("%d:%s", fonts[i], string(rs[i:j])))
			i = j
		}
		if strings.Join(got, "|") != tc.want {
			t.Errorf("assign(%q) = %q, want %q", tc.in, strings.Join(got, "|"), tc.want)
		}
		for _, r := range tc.missing {
			if miss[r] == 0 {
				t.Errorf("assign(%q) did not count %q as missing", tc.in, r)
			}
		}
	}
}
