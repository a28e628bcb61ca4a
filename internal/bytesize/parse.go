package bytesize

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrBadSize is wrapped by Parse's errors.
var ErrBadSize = errors.New("bad size")

// Example is what errors about a size suggest.
const Example = "65536, 64k, 256KiB, 1.5G"

// units are Parse's suffixes: 1024-based in every spelling, as
// ratelimit.ParseRate reads --limit-rate (and curl its --limit-rate).
var units = map[string]int64{
	"": 1, "B": 1,
	"k": 1 << 10, "K": 1 << 10, "KiB": 1 << 10, "kiB": 1 << 10,
	"m": 1 << 20, "M": 1 << 20, "MiB": 1 << 20,
	"g": 1 << 30, "G": 1 << 30, "GiB": 1 << 30,
	"t": 1 << 40, "T": 1 << 40, "TiB": 1 << 40,
}

// Parse reads a size in bytes: a number with an optional k, M, G or T
// suffix (1024-based; KiB, MiB, GiB, TiB and a plain B say the same, and a
// space may stand between number and unit): "65536", "64k", "256KiB",
// "1.5G". A fraction is allowed when the result is a whole number of
// bytes. Negative sizes, unknown units and sizes beyond int64 are refused
// with ErrBadSize; ranges are the caller's to check (InRange).
func Parse(s string) (int64, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("%w: empty: want e.g. %s", ErrBadSize, Example)
	}
	num, unit := in, ""
	if i := strings.IndexFunc(in, func(r rune) bool { return (r < '0' || r > '9') && r != '.' && r != '-' && r != '+' }); i >= 0 {
		num, unit = in[:i], strings.TrimSpace(in[i:])
	}
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("%w %q: unknown unit %q: want bytes with k, M, G or T (1024-based; KiB, MiB, GiB too), e.g. %s", ErrBadSize, in, unit, Example)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%w %q: negative", ErrBadSize, in)
		}
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("%w %q: too large", ErrBadSize, in)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w %q: not a number: want e.g. %s", ErrBadSize, in, Example)
	}
	if f < 0 {
		return 0, fmt.Errorf("%w %q: negative", ErrBadSize, in)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64/2 {
		return 0, fmt.Errorf("%w %q: too large", ErrBadSize, in)
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("%w %q: not a whole number of bytes (%g)", ErrBadSize, in, v)
	}
	return int64(v), nil
}

// Short returns n in the shortest form Parse reads back exactly: "64k",
// "1M", "1536k", "1000" (for help texts and error messages).
func Short(n int64) string {
	for _, u := range []struct {
		suf string
		m   int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"k", 1 << 10}} {
		if n != 0 && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.suf
		}
	}
	return strconv.FormatInt(n, 10)
}
