package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
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
