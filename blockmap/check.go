package blockmap

import (
	"context"
	"fmt"
	"os"
	"sort"

	"github.com/dgraph-io/badger/v4"
)

// Check looks for leftovers that a correct repository never has: open
// sessions, pending collections, block versions no point can see, delta
// images without a live block, and live blocks whose image is missing.
// It returns one line per problem; none means consistent.
func (r *Repo) Check(ctx context.Context) ([]string, error) {
	var problems []string
	err := r.view(ctx, func(db *badger.DB) error {
		cat, err := r.readCatalog(db)
		if err != nil {
			return err
		}
		byVM := map[string][]Point{}
		for _, v := range cat {
			byVM[v.Name] = v.Points
		}
		var vmRecs []vmRecord
		writing := map[string]uint32{} // VM -> generation of a running writer's session
		err = db.View(func(txn *badger.Txn) error {
			ss, err := readSessions(txn)
			if err != nil {
				return err
			}
			files, err := r.readSessionFiles()
			if err != nil {
				return err
			}
			for _, s := range append(ss, files...) {
				if r.vmLockHeld(s.VM) {
					// A writer at work (verify runs beside backups), not
					// the leftovers of a dead one.
					writing[s.VM] = s.Gen
					continue
				}
				problems = append(problems, fmt.Sprintf("open session: VM %s generation %d (pid %d, which no longer writes it): the VM's next backup or import removes what it left", s.VM, s.Gen, s.PID))
			}
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixGC}})
			for it.Rewind(); it.Valid(); it.Next() {
				problems = append(problems, fmt.Sprintf("pending garbage collection: VM %s", it.Item().Key()[1:]))
			}
			it.Close()
			it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixVM}, PrefetchValues: true})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				var rec vmRecord
				if _, err := getJSON(txn, it.Item().KeyCopy(nil), &rec); err != nil {
					return err
				}
				vmRecs = append(vmRecs, rec)
			}
			return nil
		})
		if err != nil {
			return err
		}
		knownDisks := map[string]bool{}
		for _, rec := range vmRecs {
			for name, id := range rec.Disks {
				spans := diskSpans(byVM[rec.Name], id)
				knownDisks[fmt.Sprint(id)] = true
				live := map[uint32]bool{}
				err := db.View(func(txn *badger.Txn) error {
					vi := newVersionIter(txn, id, true)
					vi.lenient = true
					defer vi.close()
					for vi.next() {
						if !visible(spans, vi.gen, vi.newer) {
							problems = append(problems, fmt.Sprintf("invisible block version: VM %s disk %s block %d generation %d", rec.Name, name, vi.block, vi.gen))
						} else if kind, _ := vi.kind(); kind == kindData {
							if !live[vi.gen] {
								if _, err := os.Stat(r.imagePath(id, vi.gen)); err != nil {
									problems = append(problems, fmt.Sprintf("missing delta image %s", r.imagePath(id, vi.gen)))
								}
							}
							live[vi.gen] = true
						}
					}
					if vi.skipped > 0 {
						problems = append(problems, fmt.Sprintf("malformed index keys: VM %s disk %s has %d", rec.Name, name, vi.skipped))
					}
					return nil
				})
				if err != nil {
					return err
				}
				entries, _ := os.ReadDir(r.imageDir(id))
				for _, e := range entries {
					var g uint32
					if _, err := fmt.Sscanf(e.Name(), "%d.img", &g); err != nil || !live[g] {
						if wg, ok := writing[rec.Name]; ok && wg == g && err == nil {
							continue // the image a running writer fills
						}
						problems = append(problems, fmt.Sprintf("orphaned delta image %s", r.imageDir(id)+"/"+e.Name()))
					}
				}
			}
		}
		dirs, _ := os.ReadDir(r.dir + "/images")
		for _, d := range dirs {
			if !knownDisks[d.Name()] && len(writing) == 0 { // a running writer's new disk has no record yet
				if sub, _ := os.ReadDir(r.dir + "/images/" + d.Name()); len(sub) > 0 {
					problems = append(problems, fmt.Sprintf("image directory of unknown disk %s", d.Name()))
				}
			}
		}
		return nil
	})
	sort.Strings(problems)
	return problems, err
}
