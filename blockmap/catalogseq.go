package blockmap

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// catalog.seq tells running readers (a FUSE mount, an export in another
// process) what changed in the catalog without opening the index:
//
//	<seq>                         first line: bumped on every catalog change
//	deleted <seq> <gen> "<vm>"    one line per recently deleted point (Go-quoted name)
//	trimmed <seq>                 deletions up to <seq> are no longer listed
//
// A deletion is published here (the file is replaced by rename) after the
// point records are deleted durably from the index and before any of the
// point's bytes are released, so a reader that finds its point listed
// here, or no longer in the catalog, knows its bytes may be gone. Older
// repositories have only the first line.
const catalogSeqFile = "catalog.seq"

// keepTombstones is how many deletions catalog.seq lists; a reader whose
// view of the catalog is older than the oldest listed one reads the
// catalog from the index instead.
const keepTombstones = 1024

// PointRef names one recovery point of a VM by generation.
type PointRef struct {
	VM  string
	Gen uint32
}

// CatalogState is what catalog.seq says: the catalog's sequence number and
// the points deleted recently, each with the sequence number its deletion
// was published with.
type CatalogState struct {
	Seq     uint64
	Deleted map[PointRef]uint64
	// Trimmed: deletions published at or before this sequence number are
	// no longer listed.
	Trimmed uint64
}

// Gone reports whether the point was deleted. known is false when the
// answer cannot be given from catalog.seq alone, because deletions after
// since (the sequence number of the caller's view of the catalog) have
// been trimmed from the list: then the caller reads the catalog.
func (s CatalogState) Gone(p PointRef, since uint64) (gone, known bool) {
	if _, ok := s.Deleted[p]; ok {
		return true, true
	}
	return false, s.Trimmed <= since
}

// CatalogState reads catalog.seq. A repository without the file (no
// point committed yet) has sequence number 0 and no deletions.
func (r *Repo) CatalogState() (CatalogState, error) {
	st := CatalogState{Deleted: map[PointRef]uint64{}}
	data, err := os.ReadFile(filepath.Join(r.dir, catalogSeqFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read %s: %w", catalogSeqFile, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<20)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if st.Seq, err = strconv.ParseUint(strings.TrimSpace(line), 10, 64); err != nil {
				return st, fmt.Errorf("%s: %w: first line %q is not a number", catalogSeqFile, ErrInvalid, line)
			}
			continue
		}
		f := strings.SplitN(line, " ", 4)
		switch {
		case len(f) == 4 && f[0] == "deleted":
			seq, err1 := strconv.ParseUint(f[1], 10, 64)
			gen, err2 := strconv.ParseUint(f[2], 10, 32)
			vm, err3 := strconv.Unquote(f[3])
			if err1 != nil || err2 != nil || err3 != nil {
				return st, fmt.Errorf("%s: %w: line %q", catalogSeqFile, ErrInvalid, line)
			}
			st.Deleted[PointRef{VM: vm, Gen: uint32(gen)}] = seq
		case len(f) == 2 && f[0] == "trimmed":
			if st.Trimmed, err = strconv.ParseUint(f[1], 10, 64); err != nil {
				return st, fmt.Errorf("%s: %w: line %q", catalogSeqFile, ErrInvalid, line)
			}
		case line == "":
		default:
			return st, fmt.Errorf("%s: %w: line %q", catalogSeqFile, ErrInvalid, line)
		}
	}
	return st, sc.Err()
}

// CatalogSeq is a counter that changes whenever a recovery point is
// committed or deleted. It is cheap (one small file read) so that a FUSE
// mount can poll it to notice new points.
func (r *Repo) CatalogSeq() uint64 {
	st, _ := r.CatalogState()
	return st.Seq
}

// catalogSeqIno is the inode number of catalog.seq (0 when it is
// missing): it changes with every change of the catalog.
func (r *Repo) catalogSeqIno() uint64 {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(r.dir, catalogSeqFile), &st); err != nil {
		return 0
	}
	return st.Ino
}

// writeCatalogState replaces catalog.seq. It is replaced by rename, not
// fsynced: it only tells running readers what changed, and a crash that
// loses it also ends every reader that relied on it.
func (r *Repo) writeCatalogState(st CatalogState) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", st.Seq)
	type tomb struct {
		p   PointRef
		seq uint64
	}
	var ts []tomb
	for p, seq := range st.Deleted {
		ts = append(ts, tomb{p, seq})
	}
	// Oldest first; the oldest beyond keepTombstones are trimmed.
	slices.SortFunc(ts, func(a, b tomb) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.p.VM, b.p.VM), cmp.Compare(a.p.Gen, b.p.Gen))
	})
	trimmed := st.Trimmed
	if n := len(ts) - keepTombstones; n > 0 {
		trimmed = max(trimmed, ts[n-1].seq)
		ts = ts[n:]
	}
	if trimmed > 0 {
		fmt.Fprintf(&b, "trimmed %d\n", trimmed)
	}
	for _, t := range ts {
		fmt.Fprintf(&b, "deleted %d %d %s\n", t.seq, t.p.Gen, strconv.Quote(t.p.VM))
	}
	return writeFileReplace(filepath.Join(r.dir, catalogSeqFile), []byte(b.String()), false)
}

// bumpCatalogSeq moves the counter on after a commit, keeping the list of
// deletions. A failure only makes mounts show the new point late. The
// caller holds the exclusive index lock (writers of catalog.seq take
// turns under it).
func (r *Repo) bumpCatalogSeq() {
	st := r.stateToWrite()
	st.Seq++
	if err := r.writeCatalogState(st); err != nil {
		r.log.Warn("cannot update catalog.seq; mounts may show new points late", "err", err)
	}
}

// stateToWrite reads catalog.seq for a writer. A damaged file is replaced
// by a fresh state whose number no reader has seen and which says that
// every earlier deletion is no longer listed, so every reader reads the
// catalog itself once (readers refused to trust the damaged file).
func (r *Repo) stateToWrite() CatalogState {
	st, err := r.CatalogState()
	if err != nil {
		r.log.Warn("catalog.seq is damaged; writing it anew", "err", err)
		now := uint64(time.Now().UnixNano())
		st = CatalogState{Seq: now, Trimmed: now, Deleted: map[PointRef]uint64{}}
	}
	return st
}

// publishDeleted lists deleted points in catalog.seq and moves the counter
// on. Until it succeeds, no byte of those points may be released: a
// reader could not learn that they are gone. The caller holds the
// exclusive index lock.
func (r *Repo) publishDeleted(vm string, gens []uint32) error {
	return r.publishDeletedOf(map[string][]uint32{vm: gens})
}

// publishDeletedOf is publishDeleted for the points of several VMs, in
// one write of catalog.seq.
func (r *Repo) publishDeletedOf(dels map[string][]uint32) error {
	st := r.stateToWrite()
	st.Seq++
	for vm, gens := range dels {
		for _, g := range gens {
			st.Deleted[PointRef{VM: vm, Gen: g}] = st.Seq
		}
	}
	if err := r.writeCatalogState(st); err != nil {
		return fmt.Errorf("%w: publish the deletion in %s: %v", ErrNotReleased, filepath.Join(r.dir, catalogSeqFile), err)
	}
	return nil
}

// ErrNotReleased says that points were deleted but their space was not
// released, because running readers could not be told (catalog.seq could
// not be written). The next prune, forget, backup or sweep of the VM
// releases it once they can.
var ErrNotReleased = errors.New("space of deleted points not released")
