package blockmap

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// ImageSpace compares what the delta images hold on disk with the data
// they store: data is the bytes of every data block version in the index
// (block size each), held the bytes the image files occupy (st_blocks).
// Held far above data means the images lost their holes, as a copy by
// rsync without -S or tar without --sparse leaves them; `fallocate
// --dig-holes` on each image gives the space back in place.
func (r *Repo) ImageSpace(ctx context.Context) (data, held int64, err error) {
	var disks []uint32
	err = r.view(ctx, func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixVM}, PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				var rec vmRecord
				if _, err := getJSON(txn, it.Item().KeyCopy(nil), &rec); err != nil {
					return err
				}
				for _, id := range rec.Disks {
					disks = append(disks, id)
				}
			}
			for _, id := range disks {
				vi := newVersionIter(txn, id, true)
				vi.lenient = true
				for vi.next() {
					if kind, err := vi.kind(); err == nil && kind == kindData {
						data += int64(r.cfg.BlockSize)
					}
				}
				vi.close()
			}
			return nil
		})
	})
	if err != nil {
		return 0, 0, err
	}
	for _, id := range disks {
		dir := filepath.Join(r.dir, "images", strconv.FormatUint(uint64(id), 10))
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					held += st.Blocks * 512
				}
			}
		}
	}
	return data, held, nil
}
