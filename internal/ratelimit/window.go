package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrBadWindow is wrapped by ParseWindows' errors.
var ErrBadWindow = errors.New("bad time window")

// WindowExample is what errors about windows suggest.
const WindowExample = `"08:00-18:00" or "Mon-Fri 08:00-18:00, Sat 09:00-13:00"`

// Window is a daily span of the week: from From to To (minutes after
// midnight) on each day in Days. A window whose To is not after its From
// runs past midnight into the next day.
type Window struct {
	Days     [7]bool // by time.Weekday
	From, To int     // minutes after midnight, 0..1440
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseWindows reads comma-separated windows, each an optional day, day
// range or /-separated list of them (Mon, Mon-Fri, Mon-Wed/Fri; English
// day names, three letters or whole) and a
// span HH:MM-HH:MM (24:00 is the end of the day; a span past midnight
// like 22:00-06:00 starts on the days named).
func ParseWindows(s string) ([]Window, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: empty: want e.g. %s", ErrBadWindow, WindowExample)
	}
	var out []Window
	for part := range strings.SplitSeq(s, ",") {
		w, err := parseWindow(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

func parseWindow(s string) (Window, error) {
	var w Window
	f := strings.Fields(s)
	var span string
	switch len(f) {
	case 1:
		span = f[0]
		for d := range w.Days {
			w.Days[d] = true
		}
	case 2:
		span = f[1]
		for group := range strings.SplitSeq(strings.ToLower(f[0]), "/") {
			first, last, ok := strings.Cut(group, "-")
			a, b := dayIndex(first), dayIndex(last)
			if !ok {
				b = a
			}
			if a < 0 || b < 0 {
				return w, fmt.Errorf("%w %q: days %q: want Mon, Mon-Fri, Mon-Wed/Fri or the like; e.g. %s", ErrBadWindow, s, f[0], WindowExample)
			}
			for d := a; ; d = (d + 1) % 7 {
				w.Days[d] = true
				if d == b {
					break
				}
			}
		}
	default:
		return w, fmt.Errorf("%w %q: want [DAYS] HH:MM-HH:MM, e.g. %s", ErrBadWindow, s, WindowExample)
	}
	from, to, ok := strings.Cut(span, "-")
	var err1, err2 error
	w.From, err1 = clock(from)
	w.To, err2 = clock(to)
	if !ok || err1 != nil || err2 != nil {
		return w, fmt.Errorf("%w %q: span %q: want HH:MM-HH:MM, e.g. %s", ErrBadWindow, s, span, WindowExample)
	}
	if w.From == w.To {
		return w, fmt.Errorf("%w %q: the span is empty (for all day say 00:00-24:00)", ErrBadWindow, s)
	}
	return w, nil
}

func dayIndex(s string) int {
	for i, n := range dayNames {
		if len(s) >= 3 && strings.HasPrefix(n, s[:3]) && (len(s) == 3 || strings.HasPrefix(longDay(i), s)) {
			return i
		}
	}
	return -1
}

func longDay(i int) string { return strings.ToLower(time.Weekday(i).String()) }

func clock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh*60+mm > 24*60 {
		return 0, ErrBadWindow
	}
	return hh*60 + mm, nil
}

// Contains reports whether t (in its own location) falls in the window.
func (w Window) Contains(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	d := int(t.Weekday())
	if w.From < w.To {
		return w.Days[d] && m >= w.From && m < w.To
	}
	return (w.Days[d] && m >= w.From) || (w.Days[(d+6)%7] && m < w.To)
}

// String shows the window as ParseWindows reads it.
func (w Window) String() string {
	span := fmt.Sprintf("%02d:%02d-%02d:%02d", w.From/60, w.From%60, w.To/60, w.To%60)
	var runs []string
	for d := 1; d <= 7; { // Monday first
		if !w.Days[d%7] {
			d++
			continue
		}
		e := d
		for e+1 <= 7 && w.Days[(e+1)%7] {
			e++
		}
		if e-d == 6 {
			return span
		}
		run := dayTitle(d % 7)
		if e > d {
			run += "-" + dayTitle(e%7)
		}
		runs = append(runs, run)
		d = e + 1
	}
	return strings.Join(runs, "/") + " " + span
}

func dayTitle(d int) string { return strings.ToUpper(dayNames[d][:1]) + dayNames[d][1:] }

// Schedule is a Rate and the Windows it applies in: with no Windows it
// applies always, otherwise only inside them (unlimited outside).
type Schedule struct {
	Rate    Rate
	Windows []Window
	// Location is the time zone of the Windows (nil: the time's own).
	Location *time.Location
}

// At is the rate in force at t.
func (s Schedule) At(t time.Time) Rate {
	if len(s.Windows) == 0 {
		return s.Rate
	}
	if s.Location != nil {
		t = t.In(s.Location)
	}
	for _, w := range s.Windows {
		if w.Contains(t) {
			return s.Rate
		}
	}
	return Unlimited
}

// String says what the schedule does: "50MiB/s", "unlimited",
// "10MiB/s during Mon-Fri 08:00-18:00 (unlimited otherwise)".
func (s Schedule) String() string {
	if len(s.Windows) == 0 || s.Rate == Unlimited {
		return s.Rate.String()
	}
	ws := make([]string, len(s.Windows))
	for i, w := range s.Windows {
		ws[i] = w.String()
	}
	return s.Rate.String() + " during " + strings.Join(ws, ", ") + " (unlimited otherwise)"
}
