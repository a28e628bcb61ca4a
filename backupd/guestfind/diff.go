package guestfind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/partinfo"
)

// Change kinds of a Diff.
const (
	Added       = "added"
	Deleted     = "deleted"
	Modified    = "modified" // content changed (other fields may have too)
	TypeChanged = "type"     // a file became a directory, a symlink a file, ...
	Metadata    = "metadata" // content equal, only Fields changed
)

// Fields of a Modified or Metadata change.
const (
	FieldContent = "content"
	FieldSize    = "size"
	FieldMode    = "mode"
	FieldOwner   = "owner"
	FieldMtime   = "mtime"
	FieldXattrs  = "xattrs"
	FieldACL     = "acl"
	FieldTarget  = "target"
	FieldDevice  = "device"
)

// fieldOrder is the order of a change's Fields.
var fieldOrder = []string{FieldContent, FieldSize, FieldTarget, FieldMode, FieldOwner, FieldMtime, FieldXattrs, FieldACL, FieldDevice}

// Side is an entry as one of the two points holds it.
type Side struct {
	Type   string    `json:"type"` // file, dir, symlink, fifo, socket, char, block
	Mode   string    `json:"mode"` // as ls -l shows it
	UID    *uint32   `json:"uid,omitempty"`
	GID    *uint32   `json:"gid,omitempty"`
	Size   int64     `json:"size"`
	Mtime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"`
	// HardLinkTo: an added file that is a hard link of another path
	// of the same point (the first other name, by path order).
	HardLinkTo string `json:"hard_link_to,omitempty"`
	// Entropy is the Shannon entropy (bits per byte) of the file's
	// first EntropySample bytes, for modified files when asked.
	Entropy *float64 `json:"entropy,omitempty"`
}

// Change is one entry that differs between the two points of a Diff.
type Change struct {
	FS   string `json:"filesystem"`
	Path string `json:"path"` // absolute guest path, "/" for the root
	Kind string `json:"kind"` // Added, Deleted, Modified, TypeChanged, Metadata
	// Fields says what changed in a Modified or Metadata change.
	Fields []string `json:"fields,omitempty"`
	Old    *Side    `json:"old,omitempty"`
	New    *Side    `json:"new,omitempty"`
	// Encrypted: a modified file went from low-entropy content to
	// encrypted-looking content (the ransomware fingerprint); only
	// with DiffOptions.Entropy.
	Encrypted bool `json:"encrypted,omitempty"`
	// Error: what could not be read to compare the entry (its content
	// or attributes); the entry is reported as modified.
	Error string `json:"error,omitempty"`
}

// DiffOptions says what Diff compares.
type DiffOptions struct {
	Selector
	// Path limits the diff to one subtree (any form CleanPath takes).
	Path string
	// Exclude skips entries (and what is below them): a pattern without
	// a slash matches the base name, one with a slash the whole path
	// from the root (path.Match syntax).
	Exclude []string
	// Entropy measures modified files' content (Side.Entropy) and
	// marks the low-to-encrypted-looking ones (Change.Encrypted).
	Entropy bool
}

// DiffFS is one filesystem of a Diff and how it was compared.
type DiffFS struct {
	FS
	// State: "compared", "added" (only in the later point), "deleted"
	// (only in the earlier one) or "unreadable" (Error says why; its
	// files were not compared).
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// DiffStats counts the work of a Diff.
type DiffStats struct {
	Entries int `json:"entries"` // entries looked at, in either point
	// FilesCompared: regular files of equal size in both points whose
	// content had to be known equal or not.
	FilesCompared int `json:"files_compared"`
	// SameBlocks: of those, proven equal without a read: the same
	// extents in both points over blocks of the same generation.
	SameBlocks int `json:"files_same_blocks"`
	// FilesRead: files whose content was read (whole, or only the bytes
	// in blocks whose generation differs) and compared.
	FilesRead int   `json:"files_read"`
	BytesRead int64 `json:"bytes_read"`
}

// DiffResult is what Diff found besides the changes it emitted.
type DiffResult struct {
	Filesystems []DiffFS  `json:"filesystems"`
	Stats       DiffStats `json:"stats"`
}

// EntropySample is how many leading bytes of a file Entropy measures.
const EntropySample = 256 << 10

// Entropy thresholds (bits per byte) of the Encrypted marker: from below
// LowEntropy to at least EncryptedEntropy, measured on at least
// EncryptedMinBytes (fewer bytes cannot show a high entropy).
const (
	LowEntropy        = 6.0
	EncryptedEntropy  = 7.5
	EncryptedMinBytes = 512
)

// Diff compares the guest filesystems opts selects in points from and to
// of a VM (from src) and calls emit with every change: filesystems are
// paired by name (sda/p1, lvm/vg/root, ...), entries by path. Every
// entry of both trees is looked at (a child can change while its
// directory does not); a regular file's content is read only when its
// size is the same in both points and its extents are not the same
// extents over blocks of the same generation (DiffStats). A filesystem
// that cannot be read in one point is listed in the result and
// skipped. Only emit's error, a cancelled context, a disk that cannot be
// opened or an opts.Path in neither point stop it.
func Diff(ctx context.Context, src Source, from, to blockmap.Point, opts DiffOptions, emit func(Change) error) (DiffResult, error) {
	var res DiffResult
	sub, err := CleanPath(opts.Path)
	if err != nil {
		return res, err
	}
	for _, ex := range opts.Exclude {
		if _, err := path.Match(ex, ""); err != nil {
			return res, fmt.Errorf("exclude pattern %q: %w", ex, err)
		}
	}
	a, err := openDirect(ctx, src, from, opts.Selector)
	if err != nil {
		return res, err
	}
	defer a.close()
	b, err := openDirect(ctx, src, to, opts.Selector)
	if err != nil {
		return res, err
	}
	defer b.close()
	found := false
	var inB []openFS
	for _, f := range b.fss {
		if f.err == nil || !f.noFS {
			inB = append(inB, f)
		}
	}
	take := func(name string) (openFS, bool) {
		for i, f := range inB {
			if f.Name == name {
				inB = slices.Delete(inB, i, i+1)
				return f, true
			}
		}
		return openFS{}, false
	}
	d := &differ{ctx: ctx, opts: opts, emit: emit, stats: &res.Stats, a: a, b: b}
	d.bufs.New = func() any { return &[2][]byte{make([]byte, compareChunk), make([]byte, compareChunk)} }
	for _, fa := range a.fss {
		if fa.err != nil && fa.noFS {
			continue // swap, a PV...: nothing to compare
		}
		fb, ok := take(fa.Name)
		df := DiffFS{FS: fa.FS, State: "compared"}
		switch {
		case !ok:
			df.State = Deleted
		case fa.err != nil:
			df.State, df.Error = "unreadable", fmt.Sprintf("in %s: %v", from.ID, fa.err)
		case fb.err != nil:
			df.State, df.Error, df.FS = "unreadable", fmt.Sprintf("in %s: %v", to.ID, fb.err), fb.FS
		default:
			df.FS = fb.FS
			ok, err := d.diffFS(fa, fb, sub)
			if err != nil {
				return res, err
			}
			found = found || ok
		}
		res.Filesystems = append(res.Filesystems, df)
	}
	for _, fb := range inB {
		res.Filesystems = append(res.Filesystems, DiffFS{FS: fb.FS, State: Added})
	}
	if len(res.Filesystems) == 0 && opts.Selector != (Selector{}) {
		return res, noneSelected(ctx, src, to, opts.Selector)
	}
	if !found && sub != "." {
		return res, fmt.Errorf("/%s is in neither %s nor %s: %w", sub, from.ID, to.ID, fs.ErrNotExist)
	}
	return res, nil
}

// noneSelected is the error of a selector that matched no filesystem
// in either point: what the later point has.
func noneSelected(ctx context.Context, src Source, p blockmap.Point, sel Selector) error {
	what := "--disk " + sel.Disk
	if sel.Part != "" {
		what += " --part " + sel.Part
	}
	if sel.Volume != "" {
		what = "--volume " + sel.Volume
	}
	var names []string
	if all, err := openDirect(ctx, src, p, Selector{}); err == nil {
		for _, f := range all.fss {
			n := f.Name
			if f.Type != "" {
				n += " (" + f.Type + ")"
			}
			names = append(names, n)
		}
		all.close()
	}
	has := "no filesystem"
	if len(names) > 0 {
		has = strings.Join(names, ", ")
	}
	return fmt.Errorf("%s selects no filesystem of %s (it has: %s): %w", what, p.ID, has, ErrNoFilesystem)
}

type differ struct {
	ctx   context.Context
	opts  DiffOptions
	emit  func(Change) error
	stats *DiffStats
	a, b  *pointFS
	// of the filesystem being compared
	fa, fb openFS
	owners bool
	// hard links: the first path of each multiply linked inode of the
	// later point, and added files waiting for it (emitted at the end)
	links   map[uint64][]string
	pending []Change
	pendIno []uint64
	mu      sync.Mutex // stats
	bufs    sync.Pool  // *[2][]byte of compareChunk bytes: what sameContent compares
}

// compareChunk is how many bytes of each file sameContent compares at
// once.
const compareChunk = 1 << 20

// diffFS compares subtree sub of two filesystems; ok is false when sub
// is in neither.
func (d *differ) diffFS(fa, fb openFS, sub string) (bool, error) {
	d.fa, d.fb = fa, fb
	d.owners = hasOwners(fa.Type) && hasOwners(fb.Type)
	d.links, d.pending, d.pendIno = map[uint64][]string{}, nil, nil
	inoA, okA, err := walkTo(fa.fsys, sub)
	if err != nil {
		return false, err
	}
	inoB, okB, err := walkTo(fb.fsys, sub)
	if err != nil {
		return false, err
	}
	if !okA && !okB {
		return false, nil
	}
	var ea, eb *partinfo.DirEntry
	if okA {
		ea = &partinfo.DirEntry{Name: path.Base(sub), Ino: inoA}
	}
	if okB {
		eb = &partinfo.DirEntry{Name: path.Base(sub), Ino: inoB}
	}
	if err := d.entry(sub, ea, eb); err != nil {
		return true, err
	}
	for i, c := range d.pending {
		for _, other := range d.links[d.pendIno[i]] {
			if other != c.Path {
				c.New.HardLinkTo = other
				break
			}
		}
		if err := d.emit(c); err != nil {
			return true, err
		}
	}
	return true, nil
}

// walkTo finds the inode at io/fs path p (following no symlink at its
// end); ok is false when it is not there.
func walkTo(fsys partinfo.Filesystem, p string) (uint64, bool, error) {
	ino := fsys.Root()
	if p == "." {
		return ino, true, nil
	}
	for _, name := range strings.Split(p, "/") {
		next, err := fsys.Lookup(ino, name)
		if notThere(err) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		ino = next
	}
	return ino, true, nil
}

func (d *differ) excluded(p string) bool {
	for _, ex := range d.opts.Exclude {
		target := path.Base(p)
		if strings.Contains(ex, "/") {
			target = "/" + p
			ex = "/" + strings.TrimPrefix(ex, "/")
		}
		if ok, _ := path.Match(ex, target); ok {
			return true
		}
	}
	return false
}

// showPath is the absolute guest path of io/fs path p.
func showPath(p string) string {
	if p == "." {
		return "/"
	}
	return "/" + p
}

// entry compares what the two points hold at p (nil: absent there)
// and walks what is below it.
func (d *differ) entry(p string, ea, eb *partinfo.DirEntry) error {
	if p != "." && d.excluded(p) {
		return nil
	}
	return d.finish(d.judge(p, ea, eb))
}

// judged is one entry compared (judge) and what finish does with it.
type judged struct {
	p      string
	err    error // the walk stops (a cancelled context)
	change *Change
	// pending: an added file with other names, emitted at the end of
	// the filesystem with the name of another (HardLinkTo)
	pending bool
	// link: a regular file of the later point with several names
	link    bool
	linkIno uint64
	// walk: the directories below to compare, (old, new) pairs
	walk [][2]*partinfo.DirEntry
}

// judge reads and compares what the two points hold at p: safe for
// concurrent use (children judges a directory's entries in parallel).
func (d *differ) judge(p string, ea, eb *partinfo.DirEntry) judged {
	j := judged{p: p}
	if j.err = d.ctx.Err(); j.err != nil {
		return j
	}
	d.count(func(s *DiffStats) { s.Entries++ })
	var aa, ab partinfo.Attr
	var errA, errB error
	if ea != nil {
		aa, errA = d.fa.fsys.Stat(ea.Ino)
	}
	if eb != nil {
		ab, errB = d.fb.fsys.Stat(eb.Ino)
		if errB == nil && ab.Mode.IsRegular() && ab.Nlink > 1 {
			j.link, j.linkIno = true, ab.Ino
		}
	}
	c := &Change{FS: d.fb.Name, Path: showPath(p)}
	if err := errors.Join(errA, errB); err != nil {
		c.Kind, c.Error = Modified, err.Error()
		j.change = c
		return j
	}
	switch {
	case ea == nil:
		c.Kind, c.New = Added, d.side(d.fb, ab)
		j.change, j.pending = c, ab.Mode.IsRegular() && ab.Nlink > 1
		if ab.Mode.IsDir() {
			j.walk = [][2]*partinfo.DirEntry{{nil, eb}}
		}
		return j
	case eb == nil:
		c.Kind, c.Old = Deleted, d.side(d.fa, aa)
		j.change = c
		if aa.Mode.IsDir() {
			j.walk = [][2]*partinfo.DirEntry{{ea, nil}}
		}
		return j
	case aa.Mode.Type() != ab.Mode.Type():
		c.Kind, c.Old, c.New = TypeChanged, d.side(d.fa, aa), d.side(d.fb, ab)
		j.change = c
		if aa.Mode.IsDir() {
			j.walk = append(j.walk, [2]*partinfo.DirEntry{ea, nil})
		}
		if ab.Mode.IsDir() {
			j.walk = append(j.walk, [2]*partinfo.DirEntry{nil, eb})
		}
		return j
	}
	fields, err := d.compare(c, aa, ab)
	if err != nil {
		c.Error = err.Error()
		if !slices.Contains(fields, FieldContent) {
			fields = append(fields, FieldContent)
		}
	}
	if len(fields) > 0 {
		slices.SortStableFunc(fields, func(x, y string) int { return slices.Index(fieldOrder, x) - slices.Index(fieldOrder, y) })
		c.Fields, c.Old, c.New = fields, d.side(d.fa, aa), d.side(d.fb, ab)
		c.Kind = Metadata
		if slices.Contains(fields, FieldContent) || slices.Contains(fields, FieldTarget) {
			c.Kind = Modified
		}
		if d.opts.Entropy && aa.Mode.IsRegular() && slices.Contains(fields, FieldContent) && c.Error == "" {
			d.entropy(c, aa, ab)
		}
		j.change = c
	}
	if aa.Mode.IsDir() {
		j.walk = [][2]*partinfo.DirEntry{{ea, eb}}
	}
	return j
}

// finish emits a judged entry's change and walks below it, in order.
func (d *differ) finish(j judged) error {
	if j.err != nil {
		return j.err
	}
	if j.link {
		d.links[j.linkIno] = append(d.links[j.linkIno], showPath(j.p))
	}
	if c := j.change; c != nil {
		if j.pending {
			d.pending = append(d.pending, *c)
			d.pendIno = append(d.pendIno, j.linkIno)
		} else if err := d.emit(*c); err != nil {
			return err
		}
	}
	for _, w := range j.walk {
		if err := d.children(j.p, w[0], w[1]); err != nil {
			return err
		}
	}
	return nil
}

// count updates the stats (judge runs in parallel).
func (d *differ) count(f func(*DiffStats)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d.stats)
}

// diffWorkers judge a directory's entries at once (the reads are mostly
// waits on the disks), diffWindow entries at a time.
const (
	diffWorkers = 4
	diffWindow  = 256
)

// children compares the entries of directory p, a directory in the
// points where it is given (ea or eb nil: the directory is only in one
// point, its entries are all added or deleted). Its entries are judged
// in parallel, a window at a time, and finished in name order.
func (d *differ) children(p string, ea, eb *partinfo.DirEntry) error {
	var la, lb []partinfo.DirEntry
	var err error
	if ea != nil {
		if la, err = d.fa.fsys.ReadDir(ea.Ino); err != nil {
			return d.emit(Change{FS: d.fa.Name, Path: showPath(p), Kind: Modified, Error: "list directory: " + err.Error()})
		}
	}
	if eb != nil {
		if lb, err = d.fb.fsys.ReadDir(eb.Ino); err != nil {
			return d.emit(Change{FS: d.fb.Name, Path: showPath(p), Kind: Modified, Error: "list directory: " + err.Error()})
		}
	}
	byName := func(x, y partinfo.DirEntry) int { return strings.Compare(x.Name, y.Name) }
	slices.SortFunc(la, byName)
	slices.SortFunc(lb, byName)
	join := func(n string) string {
		if p == "." {
			return n
		}
		return p + "/" + n
	}
	type pair struct {
		p      string
		ea, eb *partinfo.DirEntry
	}
	var pairs []pair
	i, j := 0, 0
	for i < len(la) || j < len(lb) {
		var pr pair
		switch {
		case j >= len(lb) || i < len(la) && la[i].Name < lb[j].Name:
			pr = pair{join(la[i].Name), &la[i], nil}
			i++
		case i >= len(la) || lb[j].Name < la[i].Name:
			pr = pair{join(lb[j].Name), nil, &lb[j]}
			j++
		default:
			pr = pair{join(la[i].Name), &la[i], &lb[j]}
			i++
			j++
		}
		if !d.excluded(pr.p) {
			pairs = append(pairs, pr)
		}
	}
	out := make([]judged, min(len(pairs), diffWindow))
	for len(pairs) > 0 {
		win := pairs[:min(len(pairs), diffWindow)]
		pairs = pairs[len(win):]
		next := make(chan int)
		var wg sync.WaitGroup
		for range min(diffWorkers, len(win)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range next {
					out[k] = d.judge(win[k].p, win[k].ea, win[k].eb)
				}
			}()
		}
		for k := range win {
			next <- k
		}
		close(next)
		wg.Wait()
		for k := range win {
			if err := d.finish(out[k]); err != nil {
				return err
			}
			out[k] = judged{}
		}
	}
	return nil
}

func (d *differ) side(f openFS, a partinfo.Attr) *Side {
	s := &Side{Type: kindOf(a.Mode), Mode: LsMode(a.Mode), Size: a.Size, Mtime: a.Mtime.UTC()}
	if hasOwners(f.Type) {
		uid, gid := a.Uid, a.Gid
		s.UID, s.GID = &uid, &gid
	}
	if a.Mode&fs.ModeSymlink != 0 {
		s.Target, _ = f.fsys.Readlink(a.Ino)
	}
	if s.Type == "dir" {
		s.Size = 0 // a directory's size is its on-disk listing, not news
	}
	return s
}

// compare lists the fields that differ between two entries of one type.
func (d *differ) compare(c *Change, a, b partinfo.Attr) ([]string, error) {
	var fields []string
	add := func(differ bool, f string) {
		if differ {
			fields = append(fields, f)
		}
	}
	typ := a.Mode.Type()
	if typ&fs.ModeSymlink == 0 {
		add(a.Mode.Perm()|a.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != b.Mode.Perm()|b.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), FieldMode)
	}
	add(d.owners && (a.Uid != b.Uid || a.Gid != b.Gid), FieldOwner)
	add(!a.Mtime.Equal(b.Mtime), FieldMtime) // to the nanosecond the filesystem keeps
	add(typ&fs.ModeDevice != 0 && a.Rdev != b.Rdev, FieldDevice)
	var errs []error
	if typ&fs.ModeSymlink != 0 {
		ta, err1 := d.fa.fsys.Readlink(a.Ino)
		tb, err2 := d.fb.fsys.Readlink(b.Ino)
		if err := errors.Join(err1, err2); err != nil {
			errs = append(errs, err)
		}
		add(ta != tb, FieldTarget)
	}
	xa, err1 := xattrsOf(d.fa.fsys, a.Ino)
	xb, err2 := xattrsOf(d.fb.fsys, b.Ino)
	if err := errors.Join(err1, err2); err != nil {
		errs = append(errs, err)
	} else {
		add(!sameXattrs(xa, xb, false), FieldXattrs)
		add(!sameXattrs(xa, xb, true), FieldACL)
	}
	if a.Mode.IsRegular() {
		add(a.Size != b.Size, FieldSize)
		if a.Size != b.Size {
			fields = append(fields, FieldContent)
		} else {
			same, err := d.sameContent(a, b)
			if err != nil {
				errs = append(errs, err)
			}
			add(err == nil && !same, FieldContent)
		}
	}
	return fields, errors.Join(errs...)
}

func xattrsOf(f partinfo.Filesystem, ino uint64) ([]partinfo.Xattr, error) {
	x, err := partinfo.Xattrs(f, ino)
	if errors.Is(err, partinfo.ErrNoXattrs) {
		return nil, nil
	}
	return x, err
}

// sameXattrs compares the ACLs (acl) or the other attributes (!acl).
func sameXattrs(a, b []partinfo.Xattr, acl bool) bool {
	pick := func(xs []partinfo.Xattr) map[string]string {
		m := map[string]string{}
		for _, x := range xs {
			isACL := x.Name == partinfo.XattrACLAccess || x.Name == partinfo.XattrACLDefault
			if isACL == acl {
				m[x.Name] = string(x.Value)
			}
		}
		return m
	}
	ma, mb := pick(a), pick(b)
	if len(ma) != len(mb) {
		return false
	}
	for k, v := range ma {
		if w, ok := mb[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sameContent tells whether two regular files of the same size hold the
// same bytes. When both lie in the same extents of the same disk, only
// the bytes in repository blocks whose generation differs between the
// points are read (a block with the same generation holds the same
// bytes); none at all when every block is shared. Else both are read.
func (d *differ) sameContent(a, b partinfo.Attr) (bool, error) {
	if a.Size == 0 {
		return true, nil
	}
	d.count(func(s *DiffStats) { s.FilesCompared++ })
	ranges, ok := d.changedRanges(a.Ino, b.Ino, a.Size)
	if !ok {
		ranges = []fileRange{{0, a.Size}}
	}
	if len(ranges) == 0 {
		d.count(func(s *DiffStats) { s.SameBlocks++ })
		return true, nil
	}
	d.count(func(s *DiffStats) { s.FilesRead++ })
	const chunk = compareChunk
	bufs := d.bufs.Get().(*[2][]byte)
	defer d.bufs.Put(bufs)
	ba, bb := bufs[0], bufs[1]
	for _, r := range ranges {
		for off := r.off; off < r.end; off += chunk {
			if err := d.ctx.Err(); err != nil {
				return false, err
			}
			n := int(min(chunk, r.end-off))
			if err := readFull(d.fa.fsys, a.Ino, ba[:n], off); err != nil {
				return false, fmt.Errorf("read %s: %w", d.a.p.ID, err)
			}
			if err := readFull(d.fb.fsys, b.Ino, bb[:n], off); err != nil {
				return false, fmt.Errorf("read %s: %w", d.b.p.ID, err)
			}
			d.count(func(s *DiffStats) { s.BytesRead += 2 * int64(n) })
			if !bytes.Equal(ba[:n], bb[:n]) {
				return false, nil
			}
		}
	}
	return true, nil
}

func readFull(f partinfo.Filesystem, ino uint64, p []byte, off int64) error {
	n, err := f.ReadAt(ino, p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// fileRange is the file bytes [off, end).
type fileRange struct{ off, end int64 }

// changedRanges is what of two files of size bytes must be read to know
// them equal: ok when both filesystems lie on the same disk (name, id,
// size) at the same place and the files have the same extents; then the
// ranges are the file bytes lying in repository blocks whose generation
// differs between the points (none: provably the same bytes).
func (d *differ) changedRanges(inoA, inoB uint64, size int64) (ranges []fileRange, ok bool) {
	fa, fb := d.fa, d.fb
	if !fa.onDisk || !fb.onDisk || fa.disk != fb.disk || fa.Name != fb.Name {
		return nil, false
	}
	ga, gb := d.a.gens[fa.disk], d.b.gens[fb.disk]
	if ga == nil || gb == nil || ga.id != gb.id || ga.size != gb.size || d.a.names[fa.disk] != d.b.names[fb.disk] {
		return nil, false
	}
	xa, err := partinfo.Extents(fa.fsys, inoA)
	if err != nil {
		return nil, false
	}
	xb, err := partinfo.Extents(fb.fsys, inoB)
	if err != nil || !slices.Equal(xa, xb) {
		return nil, false
	}
	bs := d.a.drs[fa.disk].(dataRunner).BlockBytes()
	for _, e := range xa {
		if e.Unwritten || e.Length <= 0 || e.Logical >= size {
			continue
		}
		for blk := e.Physical / bs; blk <= (e.Physical+e.Length-1)/bs; blk++ {
			if ga.at(blk) == gb.at(blk) {
				continue
			}
			lo, hi := max(blk*bs, e.Physical), min((blk+1)*bs, e.Physical+e.Length)
			r := fileRange{e.Logical + lo - e.Physical, min(e.Logical+hi-e.Physical, size)}
			if r.off >= r.end {
				continue
			}
			if n := len(ranges); n > 0 && ranges[n-1].end == r.off {
				ranges[n-1].end = r.end
			} else {
				ranges = append(ranges, r)
			}
		}
	}
	return ranges, true
}

// entropy measures the first EntropySample bytes of both files and
// marks the change Encrypted when the content went from low entropy to
// encrypted-looking.
func (d *differ) entropy(c *Change, a, b partinfo.Attr) {
	ha, na, errA := sampleEntropy(d.fa.fsys, a)
	hb, nb, errB := sampleEntropy(d.fb.fsys, b)
	if errA != nil || errB != nil {
		return
	}
	d.count(func(s *DiffStats) { s.BytesRead += int64(na + nb) })
	c.Old.Entropy, c.New.Entropy = &ha, &hb
	c.Encrypted = LooksEncrypted(ha, hb, nb)
}

// LooksEncrypted is the Encrypted marker: content of entropy before
// (bits per byte) replaced by content of entropy after measured on n
// bytes.
func LooksEncrypted(before, after float64, n int) bool {
	return before < LowEntropy && after >= EncryptedEntropy && n >= EncryptedMinBytes
}

func sampleEntropy(f partinfo.Filesystem, a partinfo.Attr) (float64, int, error) {
	n := int(min(a.Size, EntropySample))
	buf := make([]byte, n)
	if err := readFull(f, a.Ino, buf, 0); err != nil {
		return 0, 0, err
	}
	return Entropy(buf), n, nil
}

// Entropy is the Shannon entropy of b in bits per byte (0 for empty b).
func Entropy(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	var counts [256]int
	for _, c := range b {
		counts[c]++
	}
	h, n := 0.0, float64(len(b))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
