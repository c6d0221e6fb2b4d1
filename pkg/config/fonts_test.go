package config

import (
	"strings"
	"testing"
)

// pdf.fonts: each entry must exist (file or directory, relative to the
// config file); pdf.font_file still works but is warned about, since it
// no longer replaces the built-in font.
func TestPDFFonts(t *testing.T) {
	files := map[string]string{"fonts/a.ttf": "x", "extra/b.ttf": "y"}
	tests := []struct {
		name     string
		doc      string
		want     []keyLine
		warnings []string
	}{
		{name: "file and directory", doc: dirRelay + "[pdf]\nfonts = [\"fonts/a.ttf\", \"extra\"]\n"},
		{name: "missing entry", doc: dirRelay + "[pdf]\nfonts = [\"extra\", \"nope.ttf\"]\n", want: []keyLine{{"pdf.fonts[1]", 5}}},
		{name: "empty entry", doc: dirRelay + "[pdf]\nfonts = [\"\"]\n", want: []keyLine{{"pdf.fonts[0]", 5}}},
		{name: "deprecated font_file", doc: dirRelay + "[pdf]\nfont_file = \"fonts/a.ttf\"\n", warnings: []string{"pdf.font_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ps := problemsOf(t, write(t, tc.doc, files))
			var got []keyLine
			for _, p := range ps {
				got = append(got, keyLine{p.Key, p.Line})
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems %+v, want %v", ps, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("problem %d = %v, want %v (%+v)", i, got[i], tc.want[i], ps[i])
				}
				if got[i].Line == 0 {
					t.Errorf("problem %d has no line: %+v", i, ps[i])
				}
			}
			if cfg == nil {
				return
			}
			var warned []string
			for _, w := range cfg.Warnings() {
				warned = append(warned, w.Key)
				if w.Key == "pdf.font_file" && (!strings.Contains(w.Hint, "pdf.fonts") || w.Line != 5) {
					t.Errorf("font_file warning %+v: want line 5 and a hint naming pdf.fonts", w)
				}
			}
			if strings.Join(warned, ",") != strings.Join(tc.warnings, ",") {
				t.Errorf("warnings %v, want %v", warned, tc.warnings)
			}
		})
	}
}
