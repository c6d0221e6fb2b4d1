package pdfmail

import (
	"image"
	"image/png"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpeer"
)

// inkGrid reduces a rendered page to a coarse map: '#' where a cell of
// cell×cell pixels has dark pixels, '.' where it is blank. It is stable
// across small anti-aliasing differences but shows where text blocks are.
func inkGrid(img image.Image, cell int) []string {
	b := img.Bounds()
	var rows []string
	for y0 := b.Min.Y; y0 < b.Max.Y; y0 += cell {
		var row strings.Builder
		for x0 := b.Min.X; x0 < b.Max.X; x0 += cell {
			ink := false
			for y := y0; y < min(y0+cell, b.Max.Y) && !ink; y++ {
				for x := x0; x < min(x0+cell, b.Max.X); x++ {
					r, g, bl, _ := img.At(x, y).RGBA()
					if (r+g+bl)/3 < 0xE000 {
						ink = true
						break
					}
				}
			}
			if ink {
				row.WriteByte('#')
			} else {
				row.WriteByte('.')
			}
		}
		rows = append(rows, row.String())
	}
	return rows
}

// TestFirstPageShowsHeaderBlock renders page 1 with poppler's pdftoppm and
// checks the layout: a header block of five labelled lines at the top left,
// the rule under it, the body, and the page footer. The ink map is kept as
// a golden file (testdata/page1.grid) and compared with a small tolerance.
func TestFirstPageShowsHeaderBlock(t *testing.T) {
	testpeer.Require(t, "pdftoppm")
	msg := buildMessage("Quartalsbericht Q1 – „vertraulich“",
		testPart{contentType: "text/plain; charset=utf-8", body: []byte(strings.Join(multilingual, "\r\n") + "\r\n")},
		testPart{contentType: "application/pdf", filename: "Bericht.pdf", body: []byte("%PDF-1.7")})
	_, pdf := seal(t, &Sealer{Language: "de", Now: func() time.Time { return fixedTime }}, msg, testPassword)
	pngPath := testpeer.PDFRenderPNG(t, pdf, testPassword, 1, 36)
	if dir := os.Getenv("PDFMAIL_KEEP"); dir != "" {
		b, _ := os.ReadFile(pngPath)
		_ = os.WriteFile(dir+"/page1-36dpi.png", b, 0o644)
		big := testpeer.PDFRenderPNG(t, pdf, testPassword, 1, 100)
		b, _ = os.ReadFile(big)
		_ = os.WriteFile(dir+"/page1-100dpi.png", b, 0o644)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("pdftoppm output is not a PNG: %v", err)
	}
	// A4 at 36 dpi: 298 x 421 pixels; cells of 6 px are ~4.2 mm.
	if w, h := img.Bounds().Dx(), img.Bounds().Dy(); w < 290 || w > 300 || h < 415 || h > 425 {
		t.Fatalf("page 1 is %dx%d px, want A4 at 36 dpi (298x421)", w, h)
	}
	grid := inkGrid(img, 6)
	cols := len(grid[0])
	margin := 20 * 36 / 25.4 / 6 // 20 mm in cells
	labelEnd := (20 + 28) * 36 / 25.4 / 6

	// Header block: the first inked rows have ink in the label column and
	// in the value column, with nothing left of the margin.
	var headerRows []int
	ruleRow := -1
	for i, row := range grid {
		if strings.Count(row, "#") == 0 {
			continue
		}
		if strings.Count(row[:int(margin)-1], "#") > 0 {
			t.Errorf("row %d has ink left of the 20 mm margin: %s", i, row)
		}
		if strings.Count(row, "#") > cols*3/5 && ruleRow < 0 && len(headerRows) >= 5 {
			ruleRow = i // the rule under the header block spans the text width
			continue
		}
		if ruleRow < 0 {
			labels := strings.Count(row[int(margin):int(labelEnd)], "#")
			values := strings.Count(row[int(labelEnd)+1:], "#")
			if labels > 0 && values > 0 {
				headerRows = append(headerRows, i)
			}
		}
	}
	if len(headerRows) < 5 {
		t.Errorf("header block: %d rows with label and value, want at least 5 (Von, An, Kopie, Datum, Betreff)", len(headerRows))
	}
	if len(headerRows) > 0 && headerRows[0] > int(margin)+2 {
		t.Errorf("header block starts at row %d, want it at the top margin (%d)", headerRows[0], int(margin))
	}
	if ruleRow < 0 {
		t.Errorf("no rule under the header block")
	}
	// Footer: the last inked row is in the bottom margin, centred ("Seite 1 von 1").
	last := -1
	for i, row := range grid {
		if strings.Contains(row, "#") {
			last = i
		}
	}
	if footer := grid[max(last, 0)]; last < len(grid)-int(margin) || strings.Contains(footer[:cols/3], "#") ||
		strings.Contains(footer[cols*2/3:], "#") {
		t.Errorf("no centred page footer in the bottom margin (last inked row %d: %s)", last, footer)
	}
	golden := strings.Join(grid, "\n") + "\n"
	compareGrid(t, "page1.grid", golden)
	if t.Failed() {
		t.Logf("page 1 ink map:\n%s", golden)
	}
}

// compareGrid allows up to 2% of cells to differ (font hinting, poppler
// versions) from the golden map.
func compareGrid(t *testing.T, name, got string) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantB, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run go test -update)", path, err)
	}
	want := string(wantB)
	if len(want) != len(got) {
		t.Fatalf("ink map size changed: %d cells, golden %d", len(got), len(want))
	}
	diff := 0
	for i := range got {
		if got[i] != want[i] {
			diff++
		}
	}
	if diff*50 > len(got) {
		t.Errorf("page 1 differs from %s in %d of %d cells (more than 2%%)", path, diff, len(got))
	}
}
