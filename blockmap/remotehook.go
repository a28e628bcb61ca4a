package blockmap

import "golang.org/x/sys/unix"

// DataRuns calls fn for each run of consecutive data blocks of the disk
// at this point, in block order: blocks [first, first+n) are held by the
// delta image of generation gen. Holes and zero blocks are in no run.
// Equal generations of one block in two points of a VM mean equal bytes,
// so the remote replication reads only blocks whose generation changed
// since a point it already copied. Neighbouring runs may touch (with
// different generations). fn returning false stops the walk.
//
// The walk costs nothing per block: a 1 PiB disk holding 1 MiB of data
// has a handful of runs.
func (dr *DiskReader) DataRuns(fn func(first, n int64, gen uint32) bool) {
	for _, r := range dr.m.runs {
		if r.first >= dr.n {
			return
		}
		if !fn(r.first, min(int64(r.n), dr.n-r.first), r.gen) {
			return
		}
	}
}

// AdviseRandom tells the kernel that this reader will read the disk's
// delta images at scattered places: no readahead around each read. The
// remote replication of an incremental point reads its changed blocks
// one or a few at a time; with the default readahead the kernel read
// 128 KiB into the page cache for each 64 KiB block. It applies to this
// reader's open files only.
func (dr *DiskReader) AdviseRandom() {
	seen := map[uint32]bool{}
	for _, r := range dr.m.runs {
		if r.first >= dr.n {
			return
		}
		if seen[r.gen] {
			continue
		}
		seen[r.gen] = true
		if f, err := dr.file(r.gen); err == nil {
			_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
		}
	}
}
