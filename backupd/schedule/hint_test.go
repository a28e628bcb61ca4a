package schedule

import (
	"strings"
	"testing"
	"time"
)

// TestParseHints: schedules a new administrator writes by analogy with
// other tools are refused with what was probably meant.
func TestParseHints(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{"every 4h", `did you mean "4h" (or "@every 4h")`},
		{"daily 02:00", `write "0 2 * * *"`},
		{"02:30", `write "30 2 * * *"`},
		{"at 22:30", `write "30 22 * * *"`},
		{"sunday 04:00", `"0 4 * * sun"`},
		{"1d", `did you mean "24h"`},
		{"@every 7d", `did you mean "168h"`},
	} {
		_, err := Parse(c.spec, time.UTC)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q): %v; want a hint with %s", c.spec, err, c.want)
		}
	}
	// Valid ones and errors without a likely meaning are unchanged.
	if _, err := Parse("0 2 * * *", time.UTC); err != nil {
		t.Error(err)
	}
	if _, err := Parse("0 25 * * *", time.UTC); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("hour 25: %v", err)
	}
}
