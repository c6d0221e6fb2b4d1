package pdfmail

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf16"

	"github.com/pdfcpu/pdfcpu/pkg/filter"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

// fpdf writes its TrueType fonts with CID = Unicode code point and a
// ToUnicode map that says just that (every code to itself). Text drawn as
// Arabic presentation forms (shape.go) would then copy as presentation
// forms; fixToUnicode replaces each font's map with one that sends every
// presentation form back to the characters it stands for and every other
// code to itself.

// toUnicodeCMap is the CMap (PDF 32000-2 §9.10.3): the codes of over
// (presentation forms) mapped to their characters, all others to
// themselves. Ranges never cross a change of the first byte and a block
// holds at most 100 entries, as the CMap format asks.
func toUnicodeCMap(over map[rune][]rune) []byte { return cmapText(over, true) }

// cmapText writes the CMap of over; with identity, every other code maps
// to itself, else to nothing (the fonts of hbshape.go).
func cmapText(over map[rune][]rune, identity bool) []byte {
	var b strings.Builder
	b.WriteString("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n" +
		"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n" +
		"/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n" +
		"1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n")
	codes := make([]rune, 0, len(over))
	for c := range over {
		if c >= 0 && c <= 0xFFFF {
			codes = append(codes, c)
		}
	}
	slices.Sort(codes)

	// The identity ranges between the overridden codes.
	type span struct{ lo, hi rune }
	var spans []span
	next := rune(0)
	emit := func(lo, hi rune) {
		for lo <= hi {
			end := min(hi, lo|0xFF)
			spans = append(spans, span{lo, end})
			lo = end + 1
		}
	}
	for _, c := range codes {
		if c > next {
			emit(next, c-1)
		}
		next = c + 1
	}
	emit(next, 0xFFFF)
	if !identity {
		spans = nil
	}

	for i := 0; i < len(spans); i += 100 {
		part := spans[i:min(i+100, len(spans))]
		fmt.Fprintf(&b, "%d beginbfrange\n", len(part))
		for _, s := range part {
			fmt.Fprintf(&b, "<%04X> <%04X> <%04X>\n", s.lo, s.hi, s.lo)
		}
		b.WriteString("endbfrange\n")
	}
	for i := 0; i < len(codes); i += 100 {
		part := codes[i:min(i+100, len(codes))]
		fmt.Fprintf(&b, "%d beginbfchar\n", len(part))
		for _, c := range part {
			fmt.Fprintf(&b, "<%04X> <", c)
			for _, u := range utf16.Encode(over[c]) {
				fmt.Fprintf(&b, "%04X", u)
			}
			b.WriteString(">\n")
		}
		b.WriteString("endbfchar\n")
	}
	b.WriteString("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n")
	return []byte(b.String())
}

// fixToUnicode gives every Type0 font fpdf wrote (named "utf8…") the
// ToUnicode map of toUnicodeCMap: presentation forms to the Arabic
// letters, in the built-in font the mirror codes (mirror.go) to their
// characters, and in the astral fonts Private Use Area codes to the
// characters outside the BMP they stand for; the fonts of shaped text
// (hbshape.go) their own. The maps are compressed once
// per process (the astral one again when a chain registers new codes).
func fixToUnicode(xt *model.XRefTable) error {
	for _, e := range xt.Table {
		if e == nil || e.Free {
			continue
		}
		d, ok := e.Object.(types.Dict)
		if !ok || d.Subtype() == nil || *d.Subtype() != "Type0" {
			continue
		}
		name, ok := d["BaseFont"].(types.Name)
		if !ok || !strings.Contains(string(name), "utf8") {
			continue
		}
		ref, ok := d["ToUnicode"].(types.IndirectRef)
		if !ok {
			continue
		}
		var data []byte
		var err error
		shaped, isShaped, shapedErr := shapedCMap(string(name))
		switch base := strings.ToLower(fontFamily); {
		case isShaped:
			data, err = shaped, shapedErr
		case strings.Contains(string(name), "utf8"+strings.ToLower(astralFamily)):
			data, err = astralCMap()
		case string(name) == "utf8"+base || string(name) == "utf8"+base+"B":
			data, err = builtinCMap()
		default:
			data, err = arabicCMap()
		}
		if err != nil {
			return fmt.Errorf("ToUnicode: %w", err)
		}
		target, ok := xt.Table[ref.ObjectNumber.Value()]
		if !ok || target == nil {
			return fmt.Errorf("ToUnicode: object %d missing", ref.ObjectNumber.Value())
		}
		// A copy per font: writing the document encrypts each stream.
		sd := types.StreamDict{
			Dict:           types.NewDict(),
			Raw:            append([]byte(nil), data...),
			FilterPipeline: []types.PDFFilter{{Name: filter.Flate}},
		}
		sd.InsertName("Filter", filter.Flate)
		n := int64(len(sd.Raw))
		sd.StreamLength = &n
		sd.Update("Length", types.Integer(n))
		target.Object = sd
	}
	return nil
}

var (
	arabicCMapOnce sync.Once
	arabicCMapData []byte
	arabicCMapErr  error

	astralCMapMu    sync.Mutex
	astralCMapCodes int // registered codes when astralCMapData was made
	astralCMapData  []byte
)

var (
	builtinCMapOnce sync.Once
	builtinCMapData []byte
	builtinCMapErr  error
)

// builtinCMap is the built-in font's map: presentation forms and the
// mirror codes (mirror.go).
func builtinCMap() ([]byte, error) {
	builtinCMapOnce.Do(func() {
		m := map[rune][]rune{}
		for k, v := range arabic().original {
			m[k] = v
		}
		for k, v := range mirrors().toUni {
			m[k] = v
		}
		builtinCMapData, builtinCMapErr = deflate(toUnicodeCMap(m))
	})
	return builtinCMapData, builtinCMapErr
}

func arabicCMap() ([]byte, error) {
	arabicCMapOnce.Do(func() {
		arabicCMapData, arabicCMapErr = deflate(toUnicodeCMap(arabic().original))
	})
	return arabicCMapData, arabicCMapErr
}

func astralCMap() ([]byte, error) {
	m := astralToUnicode()
	astralCMapMu.Lock()
	defer astralCMapMu.Unlock()
	if astralCMapData == nil || astralCMapCodes != len(m) {
		data, err := deflate(toUnicodeCMap(m))
		if err != nil {
			return nil, err
		}
		astralCMapData, astralCMapCodes = data, len(m)
	}
	return astralCMapData, nil
}

// deflate compresses for the FlateDecode filter (zlib format).
func deflate(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
