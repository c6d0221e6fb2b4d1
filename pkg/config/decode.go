package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
)

// decoder maps the generic TOML tree (as go-toml decodes it: string, int64,
// float64, bool, time values, []any, map[string]any) onto the typed structs.
// Unlike go-toml's struct decoder, which stops at the first type error, it
// records a Problem for every bad key and carries on, leaving the default
// in place, so one run of `config check` lists everything.
type decoder struct {
	ps *problems
}

var durationType = reflect.TypeFor[Duration]()

// sizeKeys are integer keys that also accept a size string ("50MiB").
var sizeKeys = map[string]bool{"max_message_bytes": true, "min_size": true, "max_size": true}

// defaulter is implemented by the element types of arrays of tables whose
// entries get defaults of their own (keyservers[].timeout, rules' actions).
type defaulter interface{ setDefaults() }

func (d *decoder) decodeTable(path string, m map[string]any, v reflect.Value) {
	t := v.Type()
	fields := make(map[string]int, t.NumField())
	var names []string
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if tag == "" || tag == "-" || !t.Field(i).IsExported() {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key := joinKey(path, k)
		i, ok := fields[k]
		if !ok {
			d.ps.add(key, nil, "unknown key", unknownKeyHint(path, k, names))
			continue
		}
		d.decodeValue(key, k, m[k], v.Field(i))
	}
}

func (d *decoder) decodeValue(path, name string, raw any, v reflect.Value) {
	switch {
	case v.Type() == durationType:
		s, ok := raw.(string)
		if !ok {
			d.ps.add(path, nil, fmt.Sprintf("%s is %s, not a duration", d.show(name, raw), tomlType(raw)), `write a quoted duration with a unit, e.g. "30s", "15m", "720h"`)
			return
		}
		var dur Duration
		if err := dur.UnmarshalText([]byte(s)); err != nil {
			d.ps.add(path, nil, fmt.Sprintf("%q is not a duration", s), `use e.g. "30s", "15m", "720h", "90d"; units: ms, s, m, h, d`)
			return
		}
		v.Set(reflect.ValueOf(dur))
	case v.Kind() == reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.ps.add(path, nil, fmt.Sprintf("%s is %s, want a string", d.show(name, raw), tomlType(raw)), "put the value in double quotes")
			return
		}
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.ps.add(path, nil, fmt.Sprintf("%s is %s, want true or false", d.show(name, raw), tomlType(raw)), "write true or false without quotes")
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		d.decodeInt(path, name, raw, v)
	case v.Kind() == reflect.Slice:
		d.decodeSlice(path, name, raw, v)
	case v.Kind() == reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			hint := fmt.Sprintf("write it as a section: [%s]", path)
			if strings.HasSuffix(path, "]") {
				hint = fmt.Sprintf("write each entry as a [[%s]] section", parentPath(path))
			}
			d.ps.add(path, nil, fmt.Sprintf("%s is %s, want a table", d.show(name, raw), tomlType(raw)), hint)
			return
		}
		d.decodeTable(path, m, v)
	default:
		// Only reachable if a field of an unsupported type is added to
		// the structs; say so instead of silently ignoring the key.
		d.ps.add(path, nil, fmt.Sprintf("internal: no decoder for %s", v.Type()), "report this as a sealgate bug")
	}
}

func (d *decoder) decodeInt(path, name string, raw any, v reflect.Value) {
	var n int64
	switch x := raw.(type) {
	case int64:
		n = x
	case string:
		if !sizeKeys[name] {
			d.ps.add(path, nil, fmt.Sprintf("%q is a string, want a whole number", x), "write the number without quotes")
			return
		}
		size, err := parseSize(x)
		if err != nil {
			d.ps.add(path, nil, fmt.Sprintf("%q is not a size", x), `write bytes as a number, or e.g. "50MiB", "10MB", "512KiB"`)
			return
		}
		n = size
	default:
		hint := "write a whole number without quotes"
		if sizeKeys[name] {
			hint = `write bytes as a number, or e.g. "50MiB"`
		}
		d.ps.add(path, nil, fmt.Sprintf("%s is %s, want a whole number", d.show(name, raw), tomlType(raw)), hint)
		return
	}
	if v.Kind() == reflect.Int && (n > math.MaxInt32 || n < math.MinInt32) {
		d.ps.add(path, nil, fmt.Sprintf("%d is out of range", n), "use a smaller number")
		return
	}
	v.SetInt(n)
}

func (d *decoder) decodeSlice(path, name string, raw any, v reflect.Value) {
	elemType := v.Type().Elem()
	list, ok := raw.([]any)
	if !ok {
		if _, isTable := raw.(map[string]any); isTable && elemType.Kind() == reflect.Struct {
			d.ps.add(path, nil, "is a single table, want an array of tables", fmt.Sprintf("write each entry under its own [[%s]] header", path))
			return
		}
		hint := fmt.Sprintf("write a list in brackets, e.g. %s = [%s]", name, d.show(name, raw))
		if elemType.Kind() == reflect.Struct {
			hint = fmt.Sprintf("write each entry as a [[%s]] section", path)
		}
		d.ps.add(path, nil, fmt.Sprintf("%s is %s, want a list", d.show(name, raw), tomlType(raw)), hint)
		return
	}
	out := reflect.MakeSlice(v.Type(), len(list), len(list))
	for i, item := range list {
		elem := out.Index(i)
		if df, ok := elem.Addr().Interface().(defaulter); ok {
			df.setDefaults()
		}
		d.decodeValue(indexKey(path, i), name, item, elem)
	}
	v.Set(out)
}

// show renders a value for a message, except under a key whose name says
// it may hold a secret (pdf.password lists sources, but an admin may
// mistake it for the password itself): secrets never reach output.
func (d *decoder) show(name string, raw any) string {
	if secretish(name) {
		return "the value"
	}
	return showValue(raw)
}

// tomlType names the TOML type of a decoded value, with its article, for
// messages like `8760 is an integer, not a duration`.
func tomlType(raw any) string {
	switch raw.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date/time"
	}
}

// showValue renders a scalar the way it was written, and containers by
// their kind only (they can be long).
func showValue(raw any) string {
	switch x := raw.(type) {
	case string:
		return fmt.Sprintf("%q", x)
	case []any:
		return "[...]"
	case map[string]any:
		return "{...}"
	default:
		return fmt.Sprint(x)
	}
}

// secretWords mark keys that would hold a secret in the file itself.
var secretWords = []string{"password", "passwd", "secret", "token", "passphrase", "private_key", "api_key", "credential"}

// secretish reports whether a key name suggests a secret value.
func secretish(name string) bool {
	name = strings.ToLower(name)
	if strings.HasSuffix(name, "_file") {
		return false
	}
	if name == "key" || strings.HasSuffix(name, "_key") {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// unknownKeyHint explains an unknown key: where a secret belongs if it
// looks like one, else the closest known key, else the list of known keys.
func unknownKeyHint(section, key string, known []string) string {
	lower := strings.ToLower(key)
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return fmt.Sprintf("keys are case-sensitive: write %q", k)
		}
	}
	if secretish(lower) {
		if f := secretFileKey(lower, known); f != "" {
			return "secrets go in files: use " + f + ", the path of a file readable only by sealgate"
		}
		return "secrets go in files, never in the config itself; this section has no key for one"
	}
	if s := closest(lower, known); s != "" {
		return fmt.Sprintf("did you mean %q?", s)
	}
	where := "at the top level"
	switch {
	case strings.HasSuffix(section, "]"):
		where = "in each [[" + parentPath(section) + "]]"
	case section != "":
		where = "in [" + section + "]"
	}
	return "known keys " + where + ": " + strings.Join(known, ", ")
}

// secretFileKey finds the *_file key that takes the secret key names: the
// exact "<key>_file", else the one *password_file in the section.
func secretFileKey(key string, known []string) string {
	var candidates []string
	for _, k := range known {
		if k == key+"_file" {
			return k
		}
		if strings.HasSuffix(k, "password_file") {
			candidates = append(candidates, k)
		}
	}
	if len(candidates) == 1 {
		return candidates[0]
	}
	return ""
}

// closest returns the known key within a small edit distance of key, for
// "did you mean" hints on typos.
func closest(key string, known []string) string {
	best, bestDist := "", 3
	if len(key) <= 4 {
		bestDist = 2
	}
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b:
// Levenshtein plus adjacent transpositions, the commonest typo ("sgin").
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
