package blockmap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/dgraph-io/badger/v4"
)

// VerifyOptions select what Verify checks.
type VerifyOptions struct {
	VM    string // "" = every VM
	Point string // "" = every point; else an id, generation or "latest" (needs VM)
	// Progress, when set, is called with bytes checked so far and the total.
	Progress func(done, total int64)
}

// BadBlock is one stored block whose bytes do not match their hash, or
// (Offset -1) a point's block map in the index that does not match the
// record made when the point was committed.
type BadBlock struct {
	VM      string   `json:"vm"`
	Disk    string   `json:"disk"`
	Offset  int64    `json:"offset"`
	Gen     uint32   `json:"generation"`
	Points  []string `json:"points"`
	Problem string   `json:"problem"`
}

func (b BadBlock) String() string {
	return fmt.Sprintf("BAD vm=%s disk=%s offset=%d generation=%d points=%v: %s", b.VM, b.Disk, b.Offset, b.Gen, b.Points, b.Problem)
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Blocks int64      `json:"blocks_checked"`
	Bytes  int64      `json:"bytes_checked"`
	Bad    []BadBlock `json:"bad"`
}

// OK reports whether nothing bad was found.
func (v *VerifyReport) OK() bool { return len(v.Bad) == 0 }

type version struct {
	disk     uint32
	diskName string
	vm       string
	block    uint64
	gen      uint32
	newer    uint32 // generation of the next newer version, 0 if none
	sum      [32]byte
	points   []Point // points of the VM (for "who sees it")
}

// Verify re-reads every stored data block (of the selected VMs/points) and
// checks it against its hash (Config.Hash).
func (r *Repo) Verify(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	if opts.Point != "" && opts.VM == "" {
		return nil, fmt.Errorf("verify: %w: point %s is named without its VM", ErrInvalid, opts.Point)
	}
	var versions []version
	var mapBad []BadBlock
	err := r.view(ctx, func(db *badger.DB) error {
		var cat []VMSummary
		if opts.VM != "" { // that VM's points alone, not the whole catalog
			pts, err := r.readPoints(db, opts.VM)
			if err != nil {
				return err
			}
			if len(pts) > 0 {
				cat = []VMSummary{{Name: opts.VM, Points: pts}}
			}
		} else {
			var err error
			if cat, err = r.readCatalog(db); err != nil {
				return err
			}
		}
		found := false
		for _, v := range cat {
			if opts.VM != "" && v.Name != opts.VM {
				continue
			}
			found = true
			pts := v.Points
			if opts.Point != "" {
				p, err := FindPoint(v.Points, v.Name, opts.Point)
				if err != nil {
					return err
				}
				pts = []Point{p}
			}
			vs, maps, err := listVersions(db, v.Name, v.Points, pts, int64(r.cfg.BlockSize))
			if err != nil {
				return err
			}
			versions = append(versions, vs...)
			mapBad = append(mapBad, maps...)
		}
		if opts.VM != "" && !found {
			return fmt.Errorf("verify: VM %q: %w: the repository has no recovery points for it", opts.VM, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep := &VerifyReport{Bad: mapBad}
	total := int64(len(versions)) * int64(r.cfg.BlockSize)
	buf := make([]byte, r.cfg.BlockSize)
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var suspects []version
	var problems []string
	for i, v := range versions {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		path := r.imagePath(v.disk, v.gen)
		f, ok := files[path]
		if !ok {
			var err error
			if f, err = os.Open(path); err != nil {
				suspects, problems = append(suspects, v), append(problems, fmt.Sprintf("delta image unreadable: %v", err))
				continue
			}
			files[path] = f
		}
		if err := preadFull(f, buf, int64(v.block)*int64(r.cfg.BlockSize)); err != nil && !errors.Is(err, io.EOF) {
			suspects, problems = append(suspects, v), append(problems, fmt.Sprintf("read error: %v", err))
			continue
		}
		rep.Blocks++
		rep.Bytes += int64(len(buf))
		if r.sum(buf) != v.sum {
			suspects, problems = append(suspects, v), append(problems, "stored bytes do not match their hash")
		}
		if opts.Progress != nil && i%64 == 0 {
			opts.Progress(int64(i)*int64(len(buf)), total)
		}
	}
	if opts.Progress != nil {
		opts.Progress(total, total)
	}
	if len(suspects) == 0 {
		return rep, nil
	}
	// A concurrent prune may have released a suspect; confirm it still exists.
	err = r.view(ctx, func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			for i, v := range suspects {
				if _, err := txn.Get(blockKey(v.disk, v.block, v.gen)); errors.Is(err, badger.ErrKeyNotFound) {
					continue
				} else if err != nil {
					return err
				}
				rep.Bad = append(rep.Bad, BadBlock{VM: v.vm, Disk: v.diskName, Offset: int64(v.block) * int64(r.cfg.BlockSize),
					Gen: v.gen, Points: seenBy(v, int64(r.cfg.BlockSize)), Problem: problems[i]})
			}
			return nil
		})
	})
	return rep, err
}

// seenBy lists the ids of the points that read version v.
func seenBy(v version, bs int64) []string {
	var ids []string
	for _, p := range v.points {
		d, ok := p.Disk(v.diskName)
		if !ok || d.ID != v.disk || !visible([]span{diskSpan(p, d)}, v.gen, v.newer) || int64(v.block)*bs >= d.Size {
			continue
		}
		ids = append(ids, p.ID)
	}
	return ids
}

// listVersions lists the data versions of a VM's disks that are visible to
// any point in sel (all of them the VM's points). In the same walk it
// recomputes the block map digest of every disk of the points in sel and
// reports each that differs from its record as a BadBlock with Offset -1:
// the damage is in the index, not in one stored block.
func listVersions(db *badger.DB, vm string, all, sel []Point, bs int64) ([]version, []BadBlock, error) {
	var rec vmRecord
	if err := db.View(func(txn *badger.Txn) error { _, err := getJSON(txn, vmKey(vm), &rec); return err }); err != nil {
		return nil, nil, err
	}
	names := make([]string, 0, len(rec.Disks))
	for n := range rec.Disks {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []version
	var bad []BadBlock
	for _, name := range names {
		id := rec.Disks[name]
		spans := diskSpans(sel, id)
		// The selected points that hold the disk, each with its digest.
		type mapCheck struct {
			p       Point
			d       DiskInfo
			sp      span
			nblocks uint64
			got     mapDigest
		}
		var checks []*mapCheck
		for _, p := range sel {
			for _, d := range p.Disks {
				if d.ID == id {
					checks = append(checks, &mapCheck{p: p, d: d, sp: diskSpan(p, d), nblocks: uint64((d.Size + bs - 1) / bs)})
				}
			}
		}
		err := db.View(func(txn *badger.Txn) error {
			vi := newVersionIter(txn, id, true)
			vi.lenient = true
			defer vi.close()
			for vi.next() {
				block, gen, newer := vi.block, vi.gen, vi.newer
				if !visible(spans, gen, newer) {
					continue
				}
				bv, err := vi.value()
				if err != nil {
					return err
				}
				if bv.kind == kindData {
					out = append(out, version{disk: id, diskName: name, vm: vm, block: block, gen: gen, newer: newer, sum: bv.sum, points: all})
					for _, c := range checks {
						if block < c.nblocks && visible([]span{c.sp}, gen, newer) {
							c.got.add(block, &bv.sum)
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("list stored blocks of %s disk %s: %w", vm, name, err)
		}
		for _, c := range checks {
			if !c.got.matches(c.d) {
				bad = append(bad, BadBlock{VM: vm, Disk: name, Offset: -1, Gen: c.p.Gen, Points: []string{c.p.ID},
					Problem: damagedMap(c.p, c.d, c.got).Error()})
			}
		}
	}
	return out, bad, nil
}
