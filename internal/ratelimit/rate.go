package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Rate is a bandwidth in bytes per second; Unlimited (0) means no limit.
type Rate int64

// Unlimited is the Rate of no limit.
const Unlimited Rate = 0

// MinRate is the lowest limit accepted: slower than this a single request
// would outlast any sensible timeout.
const MinRate Rate = 1 << 10

// ErrBadRate is wrapped by ParseRate's errors.
var ErrBadRate = errors.New("bad rate")

// RateExample is what errors about a rate suggest.
const RateExample = "50M (50 MiB/s), 800k, 1.5G, 100Mbit, or unlimited"

// ParseRate reads a bandwidth in bytes per second: a number with an
// optional k, M, G or T suffix (1024-based, like curl --limit-rate; KiB,
// MiB, GiB and TiB say the same, and a trailing "/s" is allowed), or bits
// per second with a kbit, Mbit or Gbit suffix (1000-based, as links are
// sold). "unlimited" (or "none", "off") is Unlimited. Zero, negative
// rates, rates under MinRate and anything else are refused with ErrBadRate.
func ParseRate(s string) (Rate, error) {
	in := strings.TrimSpace(s)
	t := strings.TrimSuffix(in, "/s")
	switch strings.ToLower(t) {
	case "unlimited", "none", "off":
		return Unlimited, nil
	case "":
		return 0, fmt.Errorf("%w: empty: want e.g. %s", ErrBadRate, RateExample)
	}
	num, unit := t, ""
	if i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' && r != '-' && r != '+' }); i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w %q: not a number: want e.g. %s", ErrBadRate, in, RateExample)
	}
	mult, ok := rateUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%w %q: unknown unit %q: want bytes per second with k, M, G (1024-based) or bits with kbit, Mbit, Gbit, e.g. %s", ErrBadRate, in, unit, RateExample)
	}
	if f <= 0 {
		return 0, fmt.Errorf("%w %q: a limit must be positive (for no limit say unlimited); e.g. %s", ErrBadRate, in, RateExample)
	}
	v := f * mult
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("%w %q: too large", ErrBadRate, in)
	}
	if r := Rate(v); r < MinRate {
		return 0, fmt.Errorf("%w %q: under the lowest limit of 1k (1 KiB/s); e.g. %s", ErrBadRate, in, RateExample)
	}
	return Rate(v), nil
}

var rateUnits = map[string]float64{
	"": 1, "B": 1,
	"k": 1 << 10, "K": 1 << 10, "KiB": 1 << 10, "kiB": 1 << 10,
	"m": 1 << 20, "M": 1 << 20, "MiB": 1 << 20,
	"g": 1 << 30, "G": 1 << 30, "GiB": 1 << 30,
	"t": 1 << 40, "T": 1 << 40, "TiB": 1 << 40,
	"bit": 1.0 / 8, "kbit": 1e3 / 8, "Kbit": 1e3 / 8, "Mbit": 1e6 / 8, "mbit": 1e6 / 8, "Gbit": 1e9 / 8, "gbit": 1e9 / 8,
}

// String shows a rate as ParseRate reads it back, in the largest binary
// unit that keeps it readable: 50MiB/s, 1.5GiB/s, unlimited.
func (r Rate) String() string {
	if r <= 0 {
		return "unlimited"
	}
	for _, u := range []struct {
		name string
		m    float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if float64(r) >= u.m {
			v := strings.TrimRight(strings.TrimRight(strconv.FormatFloat(float64(r)/u.m, 'f', 2, 64), "0"), ".")
			return v + u.name + "/s"
		}
	}
	return strconv.FormatInt(int64(r), 10) + "B/s"
}
