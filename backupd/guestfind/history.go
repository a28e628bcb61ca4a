package guestfind

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/partinfo"
)

// Run is consecutive points (oldest first) that hold the same state at a
// path of one filesystem: version Version (Entry set), absent (Version 0,
// Err nil) or unreadable (Err set, the first point's error).
type Run struct {
	Points  []blockmap.Point
	Version int
	Entry   *Entry
	Err     *PointError
}

// FSHistory is the history of a path in one filesystem, oldest run first.
type FSHistory struct {
	FS   FS
	Runs []Run
	// Versions is the number of distinct versions.
	Versions int
}

// Stats says how much a walk read.
type Stats struct {
	Points int // points walked
	Read   int // points whose filesystems were read
	// Reused points gave the answer of the point before them without a
	// read: every block that point's work read is unchanged (see the
	// package documentation's read set).
	Reused int
	// HashedBytes is the file content read to hash versions.
	HashedBytes int64
}

// History is the history of one path of a VM across its points.
type History struct {
	VM          string
	Path        string // io/fs form: no leading slash, "." for the root
	Points      []blockmap.Point
	Filesystems []FSHistory
	// Errors lists every point and filesystem that could not be read.
	Errors []*PointError
	Stats  Stats
}

// PointsByTime sorts a VM's points oldest first as `cairn points` lists
// them: by time, then generation.
func PointsByTime(pts []blockmap.Point) []blockmap.Point {
	out := append([]blockmap.Point(nil), pts...)
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Gen < out[j].Gen
	})
	return out
}

// CleanPath turns a guest path (/etc/hosts, etc/hosts, /) into the io/fs
// form the readers take.
func CleanPath(p string) (string, error) {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return ".", nil
	}
	if !partinfo.ValidPath(p) {
		return "", fmt.Errorf("path %q is not valid", p)
	}
	return p, nil
}

// state is what one point holds at the path in one filesystem.
type state struct {
	fs    FS
	entry *Entry
	err   *PointError
	noFS  bool // err: no filesystem recognised there in this point
}

// PathHistory walks every point of vm, oldest first, and tells the
// versions of path in the filesystems sel selects. A point or filesystem
// that cannot be read is an unreadable run and an entry of Errors; the
// walk goes on. It returns a *NotFoundError when the path is in no point.
func PathHistory(ctx context.Context, src Source, vm, guestPath string, sel Selector) (*History, error) {
	p, err := CleanPath(guestPath)
	if err != nil {
		return nil, err
	}
	pts, err := src.Points(ctx, vm)
	if err != nil {
		return nil, err
	}
	h := &History{VM: vm, Path: p, Points: PointsByTime(pts)}
	// per filesystem name: the states of every point (nil: no such
	// filesystem in that point, or path absent)
	perFS := map[string][]*state{}
	var order []string
	fsOf := map[string]FS{}
	seenFS := map[string]bool{}
	var looked []string
	work := func(o *pointFS) ([]state, error) {
		return historyStates(ctx, o, o.p, p, sel, &h.Stats)
	}
	rebind := func(prev []state, pt blockmap.Point) []state {
		states := make([]state, len(prev))
		for i, st := range prev {
			st.err = rebindErr(st.err, pt)
			states[i] = st
		}
		return states
	}
	use := func(i int, pt blockmap.Point, states []state, pointErr error) {
		if pointErr != nil {
			pe := &PointError{Point: pt.ID, Err: pointErr}
			h.Errors = append(h.Errors, pe)
			for _, name := range order {
				perFS[name][i] = &state{fs: fsOf[name], err: pe}
			}
			return
		}
		for _, st := range states {
			if !seenFS[st.fs.Name] && !st.noFS {
				seenFS[st.fs.Name] = true
				looked = append(looked, st.fs.Name)
			}
			if st.err != nil && !st.noFS {
				h.Errors = append(h.Errors, st.err)
			}
			if st.entry == nil && st.err == nil {
				continue
			}
			if perFS[st.fs.Name] == nil {
				perFS[st.fs.Name] = make([]*state, len(h.Points))
				fsOf[st.fs.Name] = st.fs
				order = append(order, st.fs.Name)
			}
			s := st
			perFS[st.fs.Name][i] = &s
		}
	}
	if err := eachPoint(ctx, src, h.Points, &h.Stats, work, rebind, use); err != nil {
		return nil, err
	}
	for _, name := range order {
		fh := buildRuns(h.Points, perFS[name])
		if fh.Versions == 0 {
			continue // unreadable only: in Errors
		}
		h.Filesystems = append(h.Filesystems, fh)
		// Where a filesystem holding the path is not recognised in a
		// point (damaged, reformatted), that point is unreadable, not
		// a gap.
		for _, st := range perFS[name] {
			if st != nil && st.noFS {
				h.Errors = append(h.Errors, st.err)
			}
		}
	}
	at := map[string]int{}
	for i, pt := range h.Points {
		at[pt.ID] = i
	}
	sort.SliceStable(h.Errors, func(i, j int) bool { return at[h.Errors[i].Point] < at[h.Errors[j].Point] })
	if len(h.Filesystems) == 0 {
		return h, &NotFoundError{VM: vm, Path: p, Points: len(h.Points), FS: looked}
	}
	return h, nil
}

// historyStates reads path p in every selected filesystem of an open point.
func historyStates(ctx context.Context, o *pointFS, pt blockmap.Point, p string, sel Selector, stats *Stats) ([]state, error) {
	if err := o.openFilesystems(ctx, sel); err != nil {
		return nil, err
	}
	var out []state
	for _, f := range o.fss {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st := state{fs: f.FS, noFS: f.noFS}
		if f.err != nil {
			st.err = &PointError{Point: pt.ID, FS: f.Name, Err: f.err}
			out = append(out, st)
			continue
		}
		e, ok, err := lookup(f.fsys, f.Type, p)
		if err == nil && ok && e.Mode.IsRegular() {
			var n int64
			e.SHA256, n, err = hashFile(ctx, f.fsys, e.Ino, e.Size)
			stats.HashedBytes += n
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			st.err = &PointError{Point: pt.ID, FS: f.Name, Err: fmt.Errorf("/%s: %w", p, err)}
		case ok:
			st.entry = &e
		}
		out = append(out, st)
	}
	return out, nil
}

// buildRuns groups the states of one filesystem (one per point, nil for
// absent) into runs and numbers the versions in the order they appear.
func buildRuns(pts []blockmap.Point, states []*state) FSHistory {
	var fh FSHistory
	versions := map[string]int{}
	sameRun := func(r *Run, s *state) bool {
		switch {
		case s == nil:
			return r.Entry == nil && r.Err == nil
		case s.err != nil:
			return r.Err != nil && r.Err.Err.Error() == s.err.Err.Error()
		default:
			return r.Entry != nil && r.Entry.key() == s.entry.key()
		}
	}
	for i, s := range states {
		if s != nil && fh.FS.Name == "" {
			fh.FS = s.fs
		}
		if n := len(fh.Runs); n > 0 && sameRun(&fh.Runs[n-1], s) {
			fh.Runs[n-1].Points = append(fh.Runs[n-1].Points, pts[i])
			continue
		}
		r := Run{Points: []blockmap.Point{pts[i]}}
		if s != nil {
			r.Err = s.err
			if s.entry != nil {
				e := *s.entry
				k := e.key()
				if versions[k] == 0 {
					fh.Versions++
					versions[k] = fh.Versions
				}
				r.Version, r.Entry = versions[k], &e
			}
		}
		fh.Runs = append(fh.Runs, r)
	}
	return fh
}
