package guestfind

import (
	"context"

	"github.com/cairnbackup/cairn/blockmap"
)

// eachPoint opens the points in order and calls use with each one's
// answer: work's on the point, or, when every block the previous point's
// work read has the same generation in this one, the previous answer
// made this point's by rebind, without a read (Stats.Reused). A point
// whose disks cannot be opened gets use(i, pt, zero, err) and the walk
// goes on. Only a cancelled context or an error of work stops it.
func eachPoint[T any](ctx context.Context, src Source, pts []blockmap.Point, stats *Stats,
	work func(o *pointFS) (T, error), rebind func(prev T, pt blockmap.Point) T,
	use func(i int, pt blockmap.Point, val T, pointErr error)) error {
	var prev *pointFS
	var prevVal T
	defer func() {
		if prev != nil {
			prev.close()
		}
	}()
	for i, pt := range pts {
		if err := ctx.Err(); err != nil {
			return err
		}
		stats.Points++
		cur, err := openPoint(ctx, src, pt)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var zero T
			use(i, pt, zero, err)
			if prev != nil {
				prev.close()
			}
			prev, prevVal = nil, zero
			continue
		}
		var val T
		if cur.reusable(prev) {
			stats.Reused++
			cur.set = prev.set // the same blocks answer for this point too
			val = rebind(prevVal, pt)
		} else {
			stats.Read++
			if val, err = work(cur); err != nil {
				cur.close()
				return err
			}
		}
		use(i, pt, val, nil)
		if prev != nil {
			prev.close()
		}
		prev, prevVal = cur, val
	}
	return nil
}

// rebindErr is e as the error of point pt (a point answered from the
// point before it has that point's errors as its own).
func rebindErr(e *PointError, pt blockmap.Point) *PointError {
	if e == nil {
		return nil
	}
	c := *e
	c.Point = pt.ID
	return &c
}
