package config

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// sizeUnits: binary units are powers of 1024, SI units powers of 1000, as
// their names say. Longest suffixes first so "MiB" is not read as "B".
var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// parseSize reads a byte count written as "52428800", "50MiB" or "10 MB".
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	factor := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, factor = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, errors.New("negative size")
	}
	if n > math.MaxInt64/factor {
		return 0, errors.New("size overflows")
	}
	return n * factor, nil
}
