package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Cron is a five-field cron expression: minute hour day-of-month month
// day-of-week, as crontab(5) reads them: lists (1,15), ranges (1-5),
// steps (*/15, 10-50/20, 5/10), month and day names (jan, mon), and 0 or 7
// for Sunday. When both day fields are restricted a day matching either
// runs, as in Vixie cron.
type Cron struct {
	minute, hour, dom, month, dow uint64 // bit i set: value i allowed
	domStar, dowStar              bool
	loc                           *time.Location
	text                          string
}

type field struct {
	name     string
	min, max int
	names    []string // names[i] is value min+i
}

var fields = [5]field{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 7, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

func parseCron(spec string, loc *time.Location) (*Cron, error) {
	parts := strings.Fields(spec)
	if len(parts) != 5 {
		return nil, fmt.Errorf("cron expression %q has %d fields, want 5: minute hour day-of-month month day-of-week (like \"0 3 * * *\")", spec, len(parts))
	}
	var sets [5]uint64
	for i, p := range parts {
		set, err := fields[i].parse(p)
		if err != nil {
			return nil, fmt.Errorf("cron expression %q: %w", spec, err)
		}
		sets[i] = set
	}
	if sets[4]&(1<<7) != 0 { // 7 is Sunday too
		sets[4] = sets[4]&^(1<<7) | 1
	}
	c := &Cron{
		minute: sets[0], hour: sets[1], dom: sets[2], month: sets[3], dow: sets[4],
		domStar: strings.HasPrefix(parts[2], "*"), dowStar: strings.HasPrefix(parts[4], "*"),
		loc: loc,
	}
	if !c.canEverRun() {
		return nil, fmt.Errorf("cron expression %q never runs (no month has that day)", spec)
	}
	return c, nil
}

// parse reads one field: a comma-separated list of *, N, N-M, each with
// an optional /STEP.
func (f field) parse(s string) (uint64, error) {
	var set uint64
	for _, item := range strings.Split(s, ",") {
		rangePart, stepPart, hasStep := strings.Cut(item, "/")
		lo, hi := f.min, f.max
		switch {
		case rangePart == "*":
		case strings.Contains(rangePart, "-"):
			a, b, _ := strings.Cut(rangePart, "-")
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			if hi, err = f.value(b); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("%s: range %q runs backwards", f.name, rangePart)
			}
		default:
			v, err := f.value(rangePart)
			if err != nil {
				return 0, err
			}
			lo, hi = v, v
			if hasStep { // "5/10" means 5-max/10
				hi = f.max
			}
		}
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepPart)
			if err != nil || n < 1 || n > f.max {
				return 0, fmt.Errorf("%s: bad step %q in %q", f.name, stepPart, item)
			}
			step = n
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << v
		}
	}
	return set, nil
}

func (f field) value(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("%s: empty value", f.name)
	}
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", f.name, s)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%s: %d is outside %d-%d", f.name, v, f.min, f.max)
	}
	return v, nil
}

// daysIn is the most days each month can have (February: 29).
var daysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// canEverRun reports whether some allowed month has an allowed day of
// month (only the day of month can rule a schedule out: "0 0 30 2 *").
func (c *Cron) canEverRun() bool {
	if c.domStar || !c.dowStar {
		return true
	}
	for m := 1; m <= 12; m++ {
		if c.month&(1<<m) == 0 {
			continue
		}
		for d := 1; d <= daysIn[m]; d++ {
			if c.dom&(1<<d) != 0 {
				return true
			}
		}
	}
	return false
}

func (c *Cron) dayMatches(t time.Time) bool {
	domOK := c.dom&(1<<t.Day()) != 0
	dowOK := c.dow&(1<<int(t.Weekday())) != 0
	if c.domStar || c.dowStar {
		return domOK && dowOK
	}
	return domOK || dowOK
}

// Next implements Schedule: the first whole minute after t that matches,
// in the schedule's time zone. Wall-clock times skipped by a daylight
// saving change do not run that day.
func (c *Cron) Next(t time.Time) time.Time {
	t = t.In(c.loc).Truncate(time.Minute).Add(time.Minute)
	// "0 0 29 2 *" can be 8 years away (2096 to 2104).
	limit := t.AddDate(9, 0, 0)
	for t.Before(limit) {
		y, mo, d := t.Date()
		h := t.Hour()
		switch {
		case c.month&(1<<int(mo)) == 0:
			t = later(t, time.Date(y, mo+1, 1, 0, 0, 0, 0, c.loc))
		case !c.dayMatches(t):
			t = later(t, time.Date(y, mo, d+1, 0, 0, 0, 0, c.loc))
		case c.hour&(1<<h) == 0:
			t = later(t, time.Date(y, mo, d, h+1, 0, 0, 0, c.loc))
		case c.minute&(1<<t.Minute()) == 0:
			if t.Minute() == 59 {
				// Move on by wall clock, so an hour repeated when daylight
				// saving ends does not run its minutes twice.
				t = later(t, time.Date(y, mo, d, h+1, 0, 0, 0, c.loc))
			} else {
				t = t.Add(time.Minute)
			}
		default:
			return t
		}
	}
	return time.Time{}
}

// RunAtStart implements Schedule: cron jobs wait for their time.
func (c *Cron) RunAtStart() bool { return false }

func (c *Cron) String() string { return c.text }

// later returns next, the wall-clock time the search moves to, unless a
// daylight saving change made time.Date resolve it to t or earlier (a
// wall-clock time inside the skipped hour); then it moves t on to its
// next whole hour instead, so the search always advances.
func later(t, next time.Time) time.Time {
	if next.After(t) {
		return next
	}
	return t.Add(time.Duration(60-t.Minute()) * time.Minute)
}
