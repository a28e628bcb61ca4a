package blockmap

import "fmt"

// Validate refuses a policy with a negative count: "keep the newest -1
// points" has no meaning, and treating it as zero would delete points the
// caller did not mean to give up.
func (p Policy) Validate() error {
	for _, k := range []struct {
		name string
		n    int
	}{{"keep-last", p.KeepLast}, {"keep-hourly", p.KeepHourly}, {"keep-daily", p.KeepDaily}, {"keep-weekly", p.KeepWeekly}, {"keep-monthly", p.KeepMonthly}} {
		if k.n < 0 {
			return fmt.Errorf("retention %s %d: %w: a count of points to keep is 0 or more", k.name, k.n, ErrInvalid)
		}
	}
	return nil
}
