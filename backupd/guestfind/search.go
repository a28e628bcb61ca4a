package guestfind

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/partinfo"
)

// SearchOptions says what Search looks for.
type SearchOptions struct {
	// Pattern is a glob (path.Match syntax: * ? [...]) on the entry's
	// name; "" or "*" matches every name.
	Pattern string
	// PathPattern, when set, is a glob the whole path (no leading slash)
	// must match as well.
	PathPattern string
	// IgnoreCase matches both globs without regard to case (NTFS, FAT).
	IgnoreCase bool
	// Under limits the search to one directory tree ("" or "/": all).
	Under string
	// Newer keeps entries modified after this time (zero: any).
	Newer time.Time
	// Larger keeps entries bigger than this many bytes (negative: any).
	Larger int64
	// Select picks the filesystems (zero: every filesystem).
	Select Selector
}

// HitRun is one entry found in consecutive points with the same
// attributes: one line however many points hold it unchanged. From and
// To (inclusive) index the SearchResult's Points.
type HitRun struct {
	FS       FS
	Path     string // io/fs form
	Entry    Entry
	From, To int
}

// SearchResult is what Search found.
type SearchResult struct {
	VM     string
	Points []blockmap.Point // searched, oldest first
	Hits   []HitRun         // by filesystem, path, then first point
	Errors []*PointError
	Stats  Stats
}

// maxDepth bounds the walk of a damaged filesystem whose directories
// loop.
const maxDepth = 4096

// Search walks the filesystems of points (any order; they are searched
// oldest first) and returns the entries whose name matches. Entries with
// the same filesystem, path and attributes in consecutive points are one
// HitRun. Points and filesystems that cannot be read are in Errors and
// the rest is searched.
func Search(ctx context.Context, src Source, vm string, points []blockmap.Point, opts SearchOptions) (*SearchResult, error) {
	pat, ppat := opts.Pattern, opts.PathPattern
	if pat == "" {
		pat = "*"
	}
	if opts.IgnoreCase {
		pat, ppat = strings.ToLower(pat), strings.ToLower(ppat)
	}
	if _, err := path.Match(pat, ""); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", opts.Pattern, err)
	}
	if _, err := path.Match(ppat, ""); err != nil {
		return nil, fmt.Errorf("path pattern %q: %w", opts.PathPattern, err)
	}
	under, err := CleanPath(opts.Under)
	if err != nil {
		return nil, err
	}
	res := &SearchResult{VM: vm, Points: PointsByTime(points)}
	type hit struct {
		fs    FS
		path  string
		entry Entry
	}
	type answer struct {
		hits []hit
		errs []*PointError
	}
	runs := map[string]*HitRun{} // open run of each hit key
	last := map[string]int{}     // point index the key was last seen in
	var all []*HitRun
	wasFS := map[string]bool{} // filesystem names read in an earlier point
	work := func(o *pointFS) (answer, error) {
		var a answer
		if err := o.openFilesystems(ctx, opts.Select); err != nil {
			return a, err
		}
		for _, f := range o.fss {
			if f.noFS && !wasFS[f.Name] {
				continue // swap, a PV, ...: never a filesystem here
			}
			wasFS[f.Name] = true
			if f.err != nil {
				a.errs = append(a.errs, &PointError{Point: o.p.ID, FS: f.Name, Err: f.err})
				continue
			}
			err := walk(ctx, f.fsys, f.Type, under, func(p string) bool {
				name, full := path.Base(p), p
				if opts.IgnoreCase {
					name, full = strings.ToLower(name), strings.ToLower(full)
				}
				if ok, _ := path.Match(pat, name); !ok {
					return false
				}
				ok, _ := path.Match(ppat, full)
				return ppat == "" || ok
			}, func(p string, e Entry) {
				if !opts.Newer.IsZero() && !e.Mtime.After(opts.Newer) {
					return
				}
				if opts.Larger >= 0 && e.Size <= opts.Larger {
					return
				}
				a.hits = append(a.hits, hit{fs: f.FS, path: p, entry: e})
			}, func(p string, err error) {
				a.errs = append(a.errs, &PointError{Point: o.p.ID, FS: f.Name, Err: fmt.Errorf("/%s: %w", p, err)})
			})
			if err != nil {
				return a, err
			}
		}
		return a, nil
	}
	rebind := func(prev answer, pt blockmap.Point) answer {
		a := answer{hits: prev.hits}
		for _, e := range prev.errs {
			a.errs = append(a.errs, rebindErr(e, pt))
		}
		return a
	}
	use := func(i int, pt blockmap.Point, a answer, pointErr error) {
		if pointErr != nil {
			res.Errors = append(res.Errors, &PointError{Point: pt.ID, Err: pointErr})
			return
		}
		res.Errors = append(res.Errors, a.errs...)
		for _, h := range a.hits {
			k := h.fs.Name + "\x00" + h.path + "\x00" + h.entry.key()
			if r := runs[k]; r != nil && last[k] == i-1 {
				r.To = i
			} else {
				r := &HitRun{FS: h.fs, Path: h.path, Entry: h.entry, From: i, To: i}
				runs[k] = r
				all = append(all, r)
			}
			last[k] = i
		}
	}
	if err := eachPoint(ctx, src, res.Points, &res.Stats, work, rebind, use); err != nil {
		return nil, err
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.FS.Name != b.FS.Name {
			return a.FS.Name < b.FS.Name
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return false // found in point order
	})
	for _, r := range all {
		res.Hits = append(res.Hits, *r)
	}
	return res, nil
}

// walk calls fn with the attributes of every entry under dir (not dir
// itself) whose path want accepts, depth first in name order. An entry or directory that cannot be read goes to bad and the
// walk goes on; only a cancelled context stops it.
func walk(ctx context.Context, fsys partinfo.Filesystem, typ, dir string, want func(p string) bool, fn func(p string, e Entry), bad func(p string, err error)) error {
	var start uint64
	if dir == "." {
		start = fsys.Root()
	} else {
		fi, err := fs.Stat(partinfo.AsFS(fsys), dir)
		if err != nil {
			if notThere(err) {
				return nil // not in this filesystem
			}
			bad(dir, err)
			return nil
		}
		a, _ := fi.Sys().(partinfo.Attr)
		if !fi.IsDir() {
			return nil
		}
		start = a.Ino
		dir = realCase(fsys, dir)
	}
	owners := hasOwners(typ)
	type item struct {
		ino   uint64
		path  string
		depth int
	}
	stack := []item{{start, dir, 0}}
	n := 0
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ents, err := fsys.ReadDir(it.ino)
		if err != nil {
			bad(it.path, err)
			continue
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
		var subdirs []item
		for _, de := range ents {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			p := de.Name
			if it.path != "." {
				p = it.path + "/" + de.Name
			}
			isDir := de.Type.IsDir()
			matched := want(p)
			if matched || de.Type&fs.ModeIrregular != 0 {
				// Only what matches (or has no type in its directory
				// entry) costs an inode read.
				a, err := fsys.Stat(de.Ino)
				if err != nil {
					bad(p, err)
					continue
				}
				isDir = a.Mode.IsDir()
				if matched {
					e := entryOf(a, owners)
					if a.Mode&fs.ModeSymlink != 0 {
						e.Target, _ = fsys.Readlink(a.Ino)
					}
					fn(p, e)
				}
			}
			if isDir && it.depth < maxDepth {
				subdirs = append(subdirs, item{de.Ino, p, it.depth + 1})
			}
		}
		for i := len(subdirs) - 1; i >= 0; i-- {
			stack = append(stack, subdirs[i])
		}
	}
	return ctx.Err()
}

// realCase is dir with each name as its directory spells it, for
// filesystems whose lookups ignore case (FAT, exFAT, NTFS): /docs found
// as /Docs is shown as /Docs. A name it cannot place (a symlink on the
// way) leaves dir as given.
func realCase(fsys partinfo.Filesystem, dir string) string {
	ino := fsys.Root()
	var out []string
	for _, name := range strings.Split(dir, "/") {
		child, err := fsys.Lookup(ino, name)
		if err != nil {
			return dir
		}
		ents, err := fsys.ReadDir(ino)
		if err != nil {
			return dir
		}
		real := ""
		for _, e := range ents {
			if e.Ino == child && strings.EqualFold(e.Name, name) {
				real = e.Name
				break
			}
		}
		if real == "" {
			return dir
		}
		out = append(out, real)
		ino = child
	}
	return strings.Join(out, "/")
}
