package config

import (
	"os"
	"testing"
)

// BenchmarkLoadExample measures a full Load of config.example.toml (parse,
// line map, decode, validation with file checks): the cost paid at every
// CLI start and `serve` reload.
func BenchmarkLoadExample(b *testing.B) {
	data, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, "../../config.example.toml"); err != nil {
			b.Fatal(err)
		}
	}
}
