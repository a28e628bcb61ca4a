package blockmap

import (
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// BaseDiff lists the byte areas of disk where the session's base (the
// view a new generation builds on: its unwritten blocks read as the base
// shows them) may differ from point p of the same VM, an older
// generation. A backup that reads only what changed since p — CBT since
// p's changeId, when p is the newest point by time but not the highest
// generation, as after a pull that brought points out of time order —
// must read these areas too, or its point would show the base's blocks
// where p's were meant.
//
// The areas are the blocks holding a version written after p's
// generation, up to the base's: a superset of the blocks that differ.
// ok is false when the two do not share the disk's history (p or the
// base lacks the disk, or its lineage differs): then only a full read is
// right. p being the base itself gives no areas. The disk's versions are
// walked once (keys only).
func (s *Session) BaseDiff(ctx context.Context, p Point, disk string) (areas []Extent, ok bool, err error) {
	if s.base == nil || p.VM != s.vm {
		return nil, false, nil
	}
	bd, okb := s.base.Disk(disk)
	pd, okp := p.Disk(disk)
	if !okb || !okp || bd.ID != pd.ID || bd.Lineage != pd.Lineage || bd.BlockSize != pd.BlockSize || bd.Size != pd.Size || p.Gen > s.base.Gen {
		return nil, false, nil
	}
	if p.Gen == s.base.Gen {
		return nil, true, nil
	}
	bs := int64(bd.BlockSize)
	err = s.repo.view(ctx, func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			vi := newVersionIter(txn, bd.ID, false)
			defer vi.close()
			last := int64(-1)
			for vi.next() {
				if vi.gen <= p.Gen || vi.gen > s.base.Gen || int64(vi.block) == last {
					continue
				}
				b := int64(vi.block)
				last = b
				off := b * bs
				if off >= bd.Size {
					continue
				}
				n := min(bs, bd.Size-off)
				if k := len(areas); k > 0 && areas[k-1].Offset+areas[k-1].Length == off {
					areas[k-1].Length += n
				} else {
					areas = append(areas, Extent{Offset: off, Length: n})
				}
				if len(areas)%4096 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
			}
			return vi.err
		})
	})
	if err != nil {
		return nil, false, fmt.Errorf("disk %s: areas changed since point %s: %w", disk, p.ID, err)
	}
	return areas, true, nil
}
