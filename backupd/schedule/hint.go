package schedule

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// clock is an "HH:MM" time of day.
var clock = regexp.MustCompile(`^([01]?[0-9]|2[0-3]):([0-5][0-9])$`)

// hint suggests what a schedule that is neither an interval nor a cron
// expression was probably meant to be ("every 4h", "daily 02:00",
// "02:00", "1d"), or "".
func hint(spec string) string {
	f := strings.Fields(strings.ToLower(spec))
	if len(f) == 0 {
		return ""
	}
	if f[0] == "every" && len(f) == 2 {
		if _, err := time.ParseDuration(f[1]); err == nil {
			return fmt.Sprintf("did you mean %q (or %q)?", f[1], "@every "+f[1])
		}
	}
	if len(f) == 1 && strings.HasSuffix(f[0], "d") {
		var n int
		if _, err := fmt.Sscanf(f[0], "%dd", &n); err == nil && n > 0 && fmt.Sprintf("%dd", n) == f[0] {
			return fmt.Sprintf("durations have no days: did you mean %q?", fmt.Sprintf("%dh", 24*n))
		}
	}
	last := f[len(f)-1]
	if m := clock.FindStringSubmatch(last); m != nil {
		hh, mm := strings.TrimLeft(m[1], "0"), strings.TrimLeft(m[2], "0")
		if hh == "" {
			hh = "0"
		}
		if mm == "" {
			mm = "0"
		}
		switch {
		case len(f) == 1 || (len(f) == 2 && (f[0] == "daily" || f[0] == "at" || f[0] == "every")):
			return fmt.Sprintf("for every day at %s, write %q", last, mm+" "+hh+" * * *")
		case len(f) == 2:
			return fmt.Sprintf("for %s at %s, write a cron expression like %q", f[0], last, mm+" "+hh+" * * "+f[0][:min(3, len(f[0]))])
		}
	}
	return ""
}

// withHint adds hint(spec) to err when there is one.
func withHint(spec string, err error) error {
	if h := hint(spec); h != "" {
		return fmt.Errorf("%w; %s", err, h)
	}
	return err
}
