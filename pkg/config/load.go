package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Load reads, decodes, defaults and validates the configuration file at
// path. A file that cannot be read gives an error wrapping the os error
// (errors.Is(err, fs.ErrNotExist) for a missing file). A file with
// problems gives *Errors listing every one of them, each with key path,
// line and hint; the *Config is then nil, so nothing runs on a config
// that was only partly understood.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load for a document already in memory. path names where it
// came from: it prefixes problems and anchors relative paths in the file.
func Parse(data []byte, path string) (*Config, error) {
	cfg := Default()
	cfg.file = path
	if dir, err := filepath.Abs(filepath.Dir(path)); err == nil {
		cfg.dir = dir
	} else {
		cfg.dir = filepath.Dir(path)
	}

	// go-toml decides what is TOML at all (syntax, duplicate keys, table
	// redefinitions). A syntax error ends the run: nothing after it can
	// be trusted to mean what it seems to.
	var tree map[string]any
	if err := toml.Unmarshal(data, &tree); err != nil {
		return nil, &Errors{File: path, Problems: []Problem{syntaxProblem(err)}}
	}

	cfg.lines = keyLines(data)
	ps := &problems{lines: cfg.lines}
	(&decoder{ps: ps}).decodeTable("", tree, reflect.ValueOf(cfg).Elem())
	cfg.applyDependentDefaults(func(k string) bool { return cfg.lines[k] > 0 })
	validate(cfg, ps)

	if len(ps.list) > 0 {
		return nil, &Errors{File: path, Problems: ps.sorted()}
	}
	return cfg, nil
}

func syntaxProblem(err error) Problem {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return Problem{
			Key:     strings.Join(de.Key(), "."),
			Line:    line,
			Message: strings.TrimPrefix(de.Error(), "toml: "),
			Hint:    "this is not valid TOML; fix this line first (strings need double quotes, tables [name], arrays of tables [[name]])",
		}
	}
	return Problem{Message: err.Error(), Hint: "this is not valid TOML"}
}

// Line returns the line of a key path in the file the Config was loaded
// from, such as "policy.rules[1].encrypt" or "keyservers[0].url"; 0 if the
// key is not in the file. Other packages use it to point their own
// findings (an unreachable policy rule) at the right line.
func (c *Config) Line(keyPath string) int {
	if c == nil {
		return 0
	}
	return c.lines[keyPath]
}

// File returns the path the Config was loaded from ("" if built in code).
func (c *Config) File() string { return c.file }

// Warnings are what the file says that still works but should change
// (deprecated keys), each with key, line and hint.
func (c *Config) Warnings() []Problem { return c.warnings }

// Path resolves a path written in the file: relative paths are relative to
// the directory of the config file (not the process's working directory),
// so `sealgate --config /etc/sealgate/sealgate.toml` finds "./data" in
// /etc/sealgate/data wherever it is started from. Absolute and empty paths
// are returned unchanged.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c == nil || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// DataPath returns the absolute location of name inside data_dir, e.g.
// DataPath("sealgate.db").
func (c *Config) DataPath(name string) string {
	return filepath.Join(c.Path(c.DataDir), name)
}
