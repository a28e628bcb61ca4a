package blockmap

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
)

// Per-disk state is sized by the data a disk holds, never by its logical
// size: a 1 PiB disk with 1 MiB of data costs what a 1 MiB disk costs. The
// maps below keep runs of consecutive blocks, with per-block values only
// for blocks that exist in the index.

// MaxDiskSize is the largest disk a repository takes (8 PiB): far above
// VMware's 62 TB, and small enough that block numbers, byte offsets and
// the lengths of reads never overflow. Larger disks are refused by name.
const MaxDiskSize int64 = 1 << 53

// dataRun is a run of consecutive data blocks stored by one generation.
// It is 24 bytes: a disk of one long run costs 4 bytes a block, one whose
// every block alternates between generations 28.
type dataRun struct {
	first int64  // first block
	idx   int64  // index of the first block's values in dataMap.crcs
	n     uint32 // number of blocks
	gen   uint32 // generation whose delta image holds the blocks
}

func (r dataRun) end() int64 { return r.first + int64(r.n) }

// dataMap is the data blocks of one disk at one point: sorted runs, and a
// checksum and a verified bit per data block. Holes and zero blocks cost
// nothing.
type dataMap struct {
	runs []dataRun
	crcs []uint32
	ok   []atomic.Uint64 // bit i: the checksum of data block i (crcs index) was verified
}

// add appends block b (greater than every block added before).
func (m *dataMap) add(b int64, gen, crc uint32) {
	if k := len(m.runs); k > 0 && m.runs[k-1].end() == b && m.runs[k-1].gen == gen && m.runs[k-1].n < math.MaxUint32 {
		m.runs[k-1].n++
	} else {
		m.runs = append(m.runs, dataRun{first: b, n: 1, idx: int64(len(m.crcs)), gen: gen})
	}
	m.crcs = append(m.crcs, crc)
}

// seal trims the slices and makes the verified bits.
func (m *dataMap) seal() {
	m.runs = append([]dataRun(nil), m.runs...)
	m.crcs = append([]uint32(nil), m.crcs...)
	m.ok = make([]atomic.Uint64, (len(m.crcs)+63)/64)
}

// search returns the index of the first run that ends after block b (the
// run holding b, or the next one), len(runs) when there is none.
func (m *dataMap) search(b int64) int {
	return sort.Search(len(m.runs), func(i int) bool { return m.runs[i].end() > b })
}

// at returns the generation holding block b (0 for a hole) and the index
// of its values.
func (m *dataMap) at(b int64) (gen uint32, i int64) {
	k := m.search(b)
	if k == len(m.runs) || m.runs[k].first > b {
		return 0, -1
	}
	r := m.runs[k]
	return r.gen, r.idx + b - r.first
}

func (m *dataMap) verified(i int64) bool { return m.ok[i/64].Load()&(1<<(i%64)) != 0 }
func (m *dataMap) setVerified(i int64)   { m.ok[i/64].Or(1 << (i % 64)) }

// blocks is the number of data blocks.
func (m *dataMap) blocks() int64 { return int64(len(m.crcs)) }

// memory estimates the bytes the map holds.
func (m *dataMap) memory() int64 {
	return int64(cap(m.runs))*24 + int64(cap(m.crcs))*4 + int64(len(m.ok))*8
}

// baseRun is a run of consecutive blocks whose newest versions have one
// kind (kindData or kindZero).
type baseRun struct {
	first int64
	idx   int64 // kindData: index of the first block's hash in baseMap.sums
	n     uint32
	kind  byte
}

func (r baseRun) end() int64 { return r.first + int64(r.n) }

// baseMap is what the previous point holds for each block of a disk
// (see DiskWriter.base): runs of blocks, with a hash per data block.
// Blocks in no run were never written (holes).
type baseMap struct {
	runs []baseRun
	sums [][32]byte
}

// add appends block b (greater than every block added before).
func (m *baseMap) add(b int64, kind byte, sum [32]byte) {
	if k := len(m.runs); k > 0 && m.runs[k-1].end() == b && m.runs[k-1].kind == kind && m.runs[k-1].n < math.MaxUint32 {
		m.runs[k-1].n++
	} else {
		m.runs = append(m.runs, baseRun{first: b, n: 1, idx: int64(len(m.sums)), kind: kind})
	}
	if kind == kindData {
		m.sums = append(m.sums, sum)
	}
}

// at is the kind and hash of block b's newest version (kind 0: none).
func (m *baseMap) at(b int64) (kind byte, sum [32]byte) {
	k := sort.Search(len(m.runs), func(i int) bool { return m.runs[i].end() > b })
	if k == len(m.runs) || m.runs[k].first > b {
		return 0, sum
	}
	r := m.runs[k]
	if r.kind == kindData {
		sum = m.sums[r.idx+b-r.first]
	}
	return r.kind, sum
}

// blockRanges is a set of block ranges [first, end) that concurrent
// writers add to; it is kept merged, so its size follows the number of
// separate areas written, not the disk's size.
type blockRanges struct {
	mu     sync.Mutex
	rs     [][2]int64
	merged int // rs[:merged] is sorted and merged
}

// add records blocks [first, end).
func (s *blockRanges) add(first, end int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := len(s.rs); k > 0 && s.rs[k-1][1] == first {
		s.rs[k-1][1] = end // the common case: sequential writes
		return
	}
	s.rs = append(s.rs, [2]int64{first, end})
	if len(s.rs)-s.merged > 4096 && len(s.rs) > 2*s.merged {
		s.compact()
	}
}

// compact sorts and merges the ranges; the caller holds mu.
func (s *blockRanges) compact() {
	sort.Slice(s.rs, func(i, j int) bool { return s.rs[i][0] < s.rs[j][0] })
	out := s.rs[:0]
	for _, r := range s.rs {
		if k := len(out); k > 0 && r[0] <= out[k-1][1] {
			out[k-1][1] = max(out[k-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	s.rs = out
	s.merged = len(out)
}

// contains reports whether block b was added.
func (s *blockRanges) contains(b int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.merged != len(s.rs) {
		s.compact()
	}
	k := sort.Search(len(s.rs), func(i int) bool { return s.rs[i][1] > b })
	return k < len(s.rs) && s.rs[k][0] <= b
}

// fileSizeAdvice explains EFBIG: the repository's filesystem cannot hold
// a delta image reaching that far (ext4 stops at 16 TiB per file with 4
// KiB blocks); disks larger than that need a repository on XFS.
func fileSizeAdvice(err error) error {
	if errors.Is(err, syscall.EFBIG) {
		return fmt.Errorf("%w: the repository's filesystem cannot hold a file reaching this offset (ext4 allows 16 TiB per file); keep repositories for disks this large on XFS", err)
	}
	return err
}
