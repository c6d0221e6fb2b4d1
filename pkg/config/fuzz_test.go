package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// FuzzLoad feeds arbitrary bytes through the whole Load path (TOML parse,
// line map, decoding, validation). Whatever the input: no panic, either a
// Config or *Errors, and every problem says something and points inside
// the document.
func FuzzLoad(f *testing.F) {
	for _, p := range []string{"../../config.example.toml", "testdata/three-mistakes.toml"} {
		seed, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
	}
	for _, s := range []string{
		"",
		dirRelay,
		"[[policy.rules]]\n[[policy.rules]]\nname = 1\n[policy.rules.x]\ny = 2\n",
		"[users]\nstatic = [{email = [1, {a = 2}]}, 3]\n",
		"a.b.c = 1\n\"quoted.key\" = { x = [ [1], [\"2\"] ] }\n",
		"[smtp]\nallowed_networks = [\n# c\n\"::1/128\", # d\n]\nmax_message_bytes = \"9223372036854775807GiB\"\n",
		"[pki]\nvalidity = 1979-05-27T07:32:00Z\nrenew_before = inf\n",
		"x = \"\"\"\nmulti\nline\"\"\"\n[relay]\nmode = 'dir'\n",
		"[[keyservers]]\nname = \"\"\n[[keyservers]]\nname = \"\"\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "fuzz.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, path)
		agreeWithGoTOMLStrict(t, data, err)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil Config without error")
			}
			return
		}
		var ce *Errors
		if !errors.As(err, &ce) {
			t.Fatalf("error %T is not *Errors: %v", err, err)
		}
		if cfg != nil || len(ce.Problems) == 0 {
			t.Fatalf("cfg=%v problems=%d", cfg != nil, len(ce.Problems))
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, p := range ce.Problems {
			if p.Message == "" || p.Line < 0 || p.Line > lines {
				t.Fatalf("bad problem %+v for a %d-line document", p, lines)
			}
		}
	})
}

var arrayIndex = regexp.MustCompile(`\[\d+\]`)

// agreeWithGoTOMLStrict checks our decoder against go-toml's own strict
// decoder (DisallowUnknownFields) as an oracle for unknown keys: every key
// go-toml finds unknown we report (or a key above it), with a line, and when
// go-toml accepts the document we report no unknown key except those that
// only differ in case from a known one. (go-toml stops at
// its first type error, which is why Load does not use it directly: it
// could not list every problem.)
func agreeWithGoTOMLStrict(t *testing.T, data []byte, err error) {
	t.Helper()
	problemKeys := map[string]bool{} // without array indices, as go-toml names them
	unknown := 0
	caseOnly := true // every unknown key differs from a known one only in case
	var ce *Errors
	if errors.As(err, &ce) {
		if len(ce.Problems) == 1 && strings.HasPrefix(ce.Problems[0].Hint, "this is not valid TOML") {
			return // go-toml's generic decoding rejected it before any key was looked at
		}
		for _, p := range ce.Problems {
			problemKeys[strings.ToLower(arrayIndex.ReplaceAllString(p.Key, ""))] = true
			top, _, _ := strings.Cut(p.Key, ".")
			problemKeys["top:"+strings.ToLower(arrayIndex.ReplaceAllString(top, ""))] = true
			if p.Message == "unknown key" {
				if p.Line == 0 {
					t.Fatalf("unknown key %s without a line", p.Key)
				}
				unknown++
				caseOnly = caseOnly && strings.HasPrefix(p.Hint, "keys are case-sensitive")
			}
		}
	}
	var scratch Config
	strictErr := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&scratch)
	var missing *toml.StrictMissingError
	switch {
	case strictErr == nil:
		// go-toml matches keys case-insensitively (like encoding/json);
		// we do not, so that a key means one thing wherever it is read.
		if unknown > 0 && !caseOnly {
			t.Fatalf("go-toml strict accepts the document, we report unknown keys: %v", err)
		}
	case errors.As(strictErr, &missing):
		for _, e := range missing.Errors {
			// We report the outermost key that is wrong (unknown, or not
			// the table/array it must be); go-toml may name one below it,
			// and after a case-insensitive match its key path is not
			// always the document's, so the section must agree at least.
			k := strings.ToLower(strings.Join(e.Key(), "."))
			top, _, _ := strings.Cut(k, ".")
			found := problemKeys["top:"+top]
			for i := range e.Key() {
				found = found || problemKeys[strings.ToLower(strings.Join(e.Key()[:i+1], "."))]
			}
			if !found {
				line, _ := e.Position()
				t.Fatalf("go-toml strict: unknown key %v on line %d; we reported: %v", e.Key(), line, err)
			}
		}
	}
}
