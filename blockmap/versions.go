package blockmap

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// versionIter walks the stored versions of one disk's blocks in index
// order: block by block and, within a block, newest generation first
// (keys hold ^gen). It is the one loop over block versions: the reader's
// map (walkMap), the writer's base (loadBase, loadSparseBase), verify,
// check, garbage collection and generation deletion all use it.
//
// After next or nextNewest returns true, block and gen name the version
// and newer is the generation of the block's next newer version (0 when
// this version is the block's newest); value and kind read it.
type versionIter struct {
	it      *badger.Iterator
	disk    uint32
	lenient bool // skip malformed keys (counting them) instead of failing with ErrIndexDamaged
	skipped int  // malformed keys skipped
	started bool // the iterator was rewound or positioned
	have    bool // block and gen name a version

	block uint64
	gen   uint32
	newer uint32
	err   error
}

// newVersionIter iterates over disk's block versions in txn; values says
// whether their values are read (and so worth prefetching).
func newVersionIter(txn *badger.Txn, disk uint32, values bool) *versionIter {
	opts := badger.IteratorOptions{Prefix: diskPrefix(disk)}
	if values {
		opts.PrefetchValues, opts.PrefetchSize = true, 256
	}
	return &versionIter{it: txn.NewIterator(opts), disk: disk}
}

func (v *versionIter) close() { v.it.Close() }

// next moves to the next version; false at the end or on a malformed key
// (then err says so, unless the iterator is lenient).
func (v *versionIter) next() bool {
	for {
		if v.started {
			v.it.Next()
		} else {
			v.it.Rewind()
			v.started = true
		}
		if !v.it.Valid() {
			return false
		}
		_, block, gen, ok := parseBlockKey(v.it.Item().Key())
		if !ok {
			if v.lenient {
				v.skipped++
				continue
			}
			v.err = fmt.Errorf("%w: malformed key %x", ErrIndexDamaged, v.it.Item().Key())
			return false
		}
		if v.have && block == v.block {
			v.newer = v.gen
		} else {
			v.newer = 0
		}
		v.have, v.block, v.gen = true, block, gen
		return true
	}
}

// nextNewest moves to the next block below nblocks that has a version in
// sp: the newest one there, which is the block's content in a point of
// that span. A block whose newest such version is older than the span's
// lineage is a hole there and is passed over.
func (v *versionIter) nextNewest(sp span, nblocks int64) bool {
	for v.next() {
		if v.gen > sp.to || v.newer != 0 && v.newer <= sp.to {
			continue // newer than the span, or older than its version of the block
		}
		if int64(v.block) >= nblocks {
			return false
		}
		if v.gen >= sp.from {
			return true
		}
		// else an earlier life of the disk id: a hole in the span
	}
	return false
}

// seekNewest positions the iterator on block's newest version in sp.
// found is false when the block has none there (a hole); more is false
// when no version of any later block follows either, so further seeks can
// stop. newer is not known after a seek.
func (v *versionIter) seekNewest(block uint64, sp span) (found, more bool, err error) {
	v.it.Seek(blockKey(v.disk, block, sp.to))
	v.started, v.have = true, false
	if !v.it.Valid() {
		return false, false, nil
	}
	_, b, gen, ok := parseBlockKey(v.it.Item().Key())
	if !ok {
		return false, false, fmt.Errorf("%w: malformed key %x", ErrIndexDamaged, v.it.Item().Key())
	}
	v.block, v.gen, v.newer = b, gen, 0
	return b == block && gen >= sp.from, true, nil
}

// value decodes the current version's value.
func (v *versionIter) value() (blockValue, error) {
	var bv blockValue
	err := v.it.Item().Value(func(b []byte) error {
		var ok bool
		if bv, ok = decodeBlockValue(b); !ok {
			return fmt.Errorf("%w: malformed value of block %d generation %d", ErrIndexDamaged, v.block, v.gen)
		}
		return nil
	})
	return bv, err
}

// kind is the current version's kind (kindData or kindZero) without
// decoding the rest; 0 for an empty value.
func (v *versionIter) kind() (byte, error) {
	var k byte
	err := v.it.Item().Value(func(b []byte) error {
		if len(b) > 0 {
			k = b[0]
		}
		return nil
	})
	return k, err
}

// key is a copy of the current version's key.
func (v *versionIter) key() []byte { return v.it.Item().KeyCopy(nil) }
