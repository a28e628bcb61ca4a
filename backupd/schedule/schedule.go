package schedule

import (
	"fmt"
	"strings"
	"time"
)

// Schedule says when a job runs.
type Schedule interface {
	// Next returns the first run strictly after t.
	Next(t time.Time) time.Time
	// RunAtStart reports whether the job also runs when the server starts
	// (intervals do; cron expressions wait for their time).
	RunAtStart() bool
	// String is the schedule as written.
	String() string
}

// MinInterval is the shortest interval accepted.
const MinInterval = time.Second

// Parse reads an interval or a cron expression, in loc (time.Local when
// nil). Errors say what was expected.
func Parse(s string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.Local
	}
	spec := strings.TrimSpace(s)
	if spec == "" {
		return nil, fmt.Errorf("empty schedule: give an interval like 30m or a cron expression like \"0 3 * * *\"")
	}
	if rest, ok := strings.CutPrefix(spec, "@every "); ok {
		sc, err := parseInterval(s, strings.TrimSpace(rest))
		if err != nil {
			return nil, withHint(strings.TrimSpace(rest), err)
		}
		return sc, nil
	}
	if expr, ok := shorthands[spec]; ok {
		c, err := parseCron(expr, loc)
		if err != nil {
			return nil, err
		}
		c.text = s
		return c, nil
	}
	if strings.HasPrefix(spec, "@") {
		return nil, fmt.Errorf("schedule %q: unknown shorthand (known: @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually, @every DURATION)", s)
	}
	if len(strings.Fields(spec)) == 1 {
		sc, err := parseInterval(s, spec)
		if err != nil {
			return nil, withHint(spec, err)
		}
		return sc, nil
	}
	c, err := parseCron(spec, loc)
	if err != nil {
		return nil, withHint(spec, err)
	}
	c.text = s
	return c, nil
}

var shorthands = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// Interval runs a job at start and then every D.
type Interval struct {
	D    time.Duration
	text string
}

func parseInterval(text, d string) (Schedule, error) {
	dur, err := time.ParseDuration(d)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: not a duration (like 30s, 15m, 24h) nor a cron expression (five fields: minute hour day-of-month month day-of-week)", text)
	}
	if dur < MinInterval {
		return nil, fmt.Errorf("schedule %q: an interval must be at least %s", text, MinInterval)
	}
	return Interval{D: dur, text: text}, nil
}

// Next implements Schedule.
func (i Interval) Next(t time.Time) time.Time { return t.Add(i.D) }

// RunAtStart implements Schedule: intervals run at once.
func (i Interval) RunAtStart() bool { return true }

func (i Interval) String() string { return i.text }
