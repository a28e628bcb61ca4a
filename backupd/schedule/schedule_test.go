package schedule

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the daylight saving test needs America/New_York everywhere
)

func mustTime(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNext(t *testing.T) {
	utc := time.UTC
	cases := []struct {
		spec, after string
		want        []string // successive runs
	}{
		{"0 3 * * *", "2026-11-23 02:59", []string{"2026-11-23 03:00", "2026-11-24 03:00"}},
		{"0 3 * * *", "2026-11-23 03:00", []string{"2026-11-24 03:00"}},
		{"*/15 * * * *", "2026-11-23 10:07", []string{"2026-11-23 10:15", "2026-11-23 10:30", "2026-11-23 10:45", "2026-11-23 11:00"}},
		{"30 22 * * mon-fri", "2026-11-27 23:00", []string{"2026-11-30 22:30", "2026-12-01 22:30"}}, // Fri night -> Mon
		{"0 0 1 * *", "2026-11-23 00:00", []string{"2026-12-01 00:00", "2027-01-01 00:00"}},
		{"0 0 29 2 *", "2026-03-01 00:00", []string{"2028-02-29 00:00", "2032-02-29 00:00"}},
		{"0 0 31 * *", "2026-11-01 00:00", []string{"2026-12-31 00:00", "2027-01-31 00:00", "2027-03-31 00:00"}},
		// Both day fields restricted: either matches (the 1st, or Sundays).
		{"0 12 1 * sun", "2026-11-28 00:00", []string{"2026-11-29 12:00", "2026-12-01 12:00", "2026-12-06 12:00"}},
		{"0 0 * * 7", "2026-11-23 00:00", []string{"2026-11-29 00:00"}}, // 7 is Sunday
		{"5/20 1-3/2 * jan,jul *", "2026-11-23 00:00", []string{"2027-01-01 01:05", "2027-01-01 01:25", "2027-01-01 01:45", "2027-01-01 03:05"}},
		{"@daily", "2026-11-23 12:00", []string{"2026-11-24 00:00"}},
		{"@hourly", "2026-11-23 12:00", []string{"2026-11-23 13:00"}},
		{"@weekly", "2026-11-23 12:00", []string{"2026-11-29 00:00"}},
		{"@monthly", "2026-11-23 12:00", []string{"2026-12-01 00:00"}},
		{"@yearly", "2026-11-23 12:00", []string{"2027-01-01 00:00"}},
	}
	for _, c := range cases {
		s, err := Parse(c.spec, utc)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.spec, err)
			continue
		}
		if s.RunAtStart() {
			t.Errorf("%q: cron schedules must not run at start", c.spec)
		}
		at := mustTime(t, utc, c.after)
		for _, w := range c.want {
			at = s.Next(at)
			if got := at.Format("2006-01-02 15:04"); got != w {
				t.Errorf("%q: got %s, want %s", c.spec, got, w)
				break
			}
		}
	}
}

func TestInterval(t *testing.T) {
	for _, spec := range []string{"30s", "@every 90m", " 24h "} {
		s, err := Parse(spec, nil)
		if err != nil {
			t.Fatalf("Parse(%q): %v", spec, err)
		}
		if !s.RunAtStart() {
			t.Errorf("%q: intervals run at start", spec)
		}
		now := time.Now()
		d := s.(Interval).D
		if got := s.Next(now); !got.Equal(now.Add(d)) {
			t.Errorf("%q: Next = %s, want %s later", spec, got, d)
		}
		if s.String() != spec {
			t.Errorf("String() = %q, want %q", s.String(), spec)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"":                 "empty schedule",
		"often":            "not a duration",
		"500ms":            "at least 1s",
		"* * * *":          "has 4 fields",
		"* * * * * *":      "has 6 fields",
		"60 * * * *":       "minute: 60 is outside 0-59",
		"* 24 * * *":       "hour: 24 is outside 0-23",
		"* * 0 * *":        "day of month: 0 is outside 1-31",
		"* * * 13 *":       "month: 13 is outside 1-12",
		"* * * * 8":        "day of week: 8 is outside 0-7",
		"5-1 * * * *":      "runs backwards",
		"*/0 * * * *":      "bad step",
		"*/x * * * *":      "bad step",
		"a * * * *":        "is not a number",
		"1,,2 * * * *":     "empty value",
		"0 0 30 feb *":     "never runs",
		"@fortnightly":     "unknown shorthand",
		"@every soon":      "not a duration",
		"0 0 * foo *":      "\"foo\" is not a number",
		"- * * * *":        "empty value",
		"0 0 31 apr,jun *": "never runs",
	}
	for spec, want := range cases {
		_, err := Parse(spec, time.UTC)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
}

// TestDaylightSaving: a job in the hour repeated when daylight saving ends
// runs once; one in the hour skipped when it starts does not run that day.
func TestDaylightSaving(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := Parse("30 1 * * *", ny)
	at := mustTime(t, ny, "2026-11-01 00:00") // fall back at 02:00 EDT
	first := s.Next(at)
	second := s.Next(first)
	if first.Format("2006-01-02 15:04") != "2026-11-01 01:30" || second.Format("2006-01-02 15:04") != "2026-11-02 01:30" {
		t.Errorf("fall back: runs at %s and %s, want once on Nov 1 then Nov 2", first, second)
	}
	s, _ = Parse("30 2 * * *", ny)
	at = mustTime(t, ny, "2026-03-08 00:00") // spring forward: 02:00 -> 03:00
	if got := s.Next(at).Format("2006-01-02 15:04"); got != "2026-03-09 02:30" {
		t.Errorf("spring forward: next run %s, want 2026-03-09 02:30", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 3 * * *", "*/5 1-3 1,15 jan-mar mon-fri", "@daily", "30s", "5/7 * * * 7", "0 0 29 2 *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec, time.UTC)
		if err != nil {
			return
		}
		at := time.Date(2026, 11, 23, 10, 7, 13, 0, time.UTC)
		next := s.Next(at)
		if !next.After(at) {
			t.Fatalf("%q: Next(%s) = %s, not after", spec, at, next)
		}
		if c, ok := s.(*Cron); ok {
			if next.Second() != 0 || !c.dayMatches(next) || c.minute&(1<<next.Minute()) == 0 || c.hour&(1<<next.Hour()) == 0 || c.month&(1<<int(next.Month())) == 0 {
				t.Fatalf("%q: Next = %s does not match the expression", spec, next)
			}
		}
	})
}
