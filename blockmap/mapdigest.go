package blockmap

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// ErrIndexDamaged says that the index (Badger) is damaged: a table fails
// its checksum, cannot be parsed, or a point's block map does not match
// the record written when the point was committed. Nothing read from it is
// served; `cairn verify` names what is affected.
var ErrIndexDamaged = errors.New("repository index is damaged")

// mapDigest summarises the block map of one disk of one point: how many
// blocks hold data and an order-independent digest of (block, hash) over
// them. It is recorded with the point at commit (DiskInfo.DataBlocks and
// MapDigest) and recomputed by every OpenDisk and by Verify, so that index
// damage that Badger's checksums cannot see (a lost table, a lost or
// stale version) is found instead of served.
type mapDigest struct {
	n    int64
	a, b uint64 // two lanes of sums of mixEntry, mod 2^64
}

// mix64 is SplitMix64's finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func mixEntry(block uint64, sum *[32]byte) (uint64, uint64) {
	s0 := binary.LittleEndian.Uint64(sum[0:])
	s1 := binary.LittleEndian.Uint64(sum[8:])
	s2 := binary.LittleEndian.Uint64(sum[16:])
	s3 := binary.LittleEndian.Uint64(sum[24:])
	a := mix64(mix64(block^0x9e3779b97f4a7c15)^s0) ^ s2
	b := mix64(mix64(block+0x632be59bd9b4e019)^s1) ^ s3
	return mix64(a), mix64(b)
}

// add counts a data block of the map; sub removes one.
func (d *mapDigest) add(block uint64, sum *[32]byte) {
	a, b := mixEntry(block, sum)
	d.n++
	d.a += a
	d.b += b
}

func (d *mapDigest) sub(block uint64, sum *[32]byte) {
	a, b := mixEntry(block, sum)
	d.n--
	d.a -= a
	d.b -= b
}

func (d mapDigest) String() string { return fmt.Sprintf("%016x%016x", d.a, d.b) }

// matches reports whether the digest is the one recorded for disk di. A
// disk recorded before digests existed matches anything.
func (d mapDigest) matches(di DiskInfo) bool {
	return di.MapDigest == "" || di.MapDigest == d.String() && di.DataBlocks == d.n
}

// damaged describes a block map that does not match its record.
func damagedMap(p Point, di DiskInfo, got mapDigest) error {
	return fmt.Errorf("%w: the block map of VM %s point %s disk %s has %d data blocks (digest %s), its record says %d (digest %s)",
		ErrIndexDamaged, p.VM, p.ID, di.Name, got.n, got, di.DataBlocks, di.MapDigest)
}

// walkMap calls fn for every block of disk id that holds data in the
// span, below nblocks, in block order, with the generation holding it:
// the newest version in the span, when it is data. OpenDisk, the digest
// and verify use it.
func walkMap(txn *badger.Txn, id uint32, sp span, nblocks int64, fn func(block uint64, gen uint32, v blockValue) error) error {
	vi := newVersionIter(txn, id, true)
	defer vi.close()
	for vi.nextNewest(sp, nblocks) {
		bv, err := vi.value()
		if err != nil {
			return err
		}
		if bv.kind == kindData {
			if err := fn(vi.block, vi.gen, bv); err != nil {
				return err
			}
		}
	}
	return vi.err
}

// digestOf computes the digest of disk di of point p from the index.
func digestOf(txn *badger.Txn, p Point, di DiskInfo, bs int64) (mapDigest, error) {
	var d mapDigest
	err := walkMap(txn, di.ID, diskSpan(p, di), (di.Size+bs-1)/bs, func(block uint64, _ uint32, v blockValue) error {
		d.add(block, &v.sum)
		return nil
	})
	return d, err
}

// recordedDigest is the digest recorded for disk di; ok is false when the
// disk has none (recorded before digests existed).
func recordedDigest(di DiskInfo) (mapDigest, bool) {
	var d mapDigest
	if len(di.MapDigest) != 32 {
		return d, false
	}
	if _, err := fmt.Sscanf(di.MapDigest, "%016x%016x", &d.a, &d.b); err != nil {
		return d, false
	}
	d.n = di.DataBlocks
	return d, true
}

// digestFrom computes the digest of the point being committed from its
// entries and the base's digest, without reading the index. ok is false
// when it cannot (a resized disk, a base without a digest, an entry whose
// base version the writer did not load): then the caller walks the index.
func (w *DiskWriter) digestFrom(entries []entry) (d mapDigest, ok bool) {
	if w.hasBase {
		if w.baseSize != w.size {
			return d, false
		}
		if d, ok = recordedDigest(w.baseDisk); !ok {
			return d, false
		}
	}
	for _, e := range entries {
		if w.hasBase {
			kind, sum, known := w.base(int64(e.block))
			if !known {
				return d, false
			}
			if kind == kindData {
				d.sub(e.block, &sum)
			}
		}
		if e.val.kind == kindData {
			d.add(e.block, &e.val.sum)
		}
	}
	return d, true
}
