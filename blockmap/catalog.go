package blockmap

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// PointIDLayout formats point ids: UTC, sortable, no colons.
const PointIDLayout = "2006-01-02T15-04-05Z"

// Consistency labels of recovery points.
const (
	ConsistencyQuiesced      = "quiesced"
	ConsistencyCrash         = "crash-consistent"
	ConsistencyImported      = "imported"
	ConsistencyUnknownSource = "unknown"
)

// Point is a committed recovery point of one VM. Committed points never change.
type Point struct {
	VM          string          `json:"vm"`
	ID          string          `json:"id"`
	Gen         uint32          `json:"generation"`
	Time        time.Time       `json:"time"`
	Consistency string          `json:"consistency"`
	Started     time.Time       `json:"started"`
	Committed   time.Time       `json:"committed"`
	Disks       []DiskInfo      `json:"disks"`
	Meta        json.RawMessage `json:"meta,omitempty"`
	// Attachments are the named files committed with the point (Session.Attach).
	Attachments []AttachmentInfo `json:"attachments,omitempty"`
	// Verdict is what PointOptions.Judge said of the point when it was
	// committed (backupd/anomaly: normal, suspicious, no-baseline). Empty
	// in points committed without a judge.
	Verdict json.RawMessage `json:"verdict,omitempty"`
}

// DiskInfo describes one disk of a recovery point.
type DiskInfo struct {
	Name      string `json:"name"`
	ID        uint32 `json:"id"`
	Size      int64  `json:"size"`
	BlockSize int    `json:"block_size"`
	// StoredBytes are the bytes this point added to the repository.
	StoredBytes int64 `json:"stored_bytes"`
	// ReadBytes are the bytes read from the source for this point.
	ReadBytes     int64 `json:"read_bytes"`
	ChangedBlocks int64 `json:"changed_blocks"`
	ZeroedBlocks  int64 `json:"zeroed_blocks"`
	// Full is true when every block was read (first backup, or a fallback).
	Full       bool            `json:"full"`
	FullReason string          `json:"full_reason,omitempty"`
	Meta       json.RawMessage `json:"meta,omitempty"`
	// Lineage is the generation where this disk's history begins for the
	// point: block versions of older generations belong to an earlier life
	// of the disk id (before points without the disk) and are not read.
	// 0 (points written before lineages were recorded): every version is.
	Lineage uint32 `json:"lineage,omitempty"`
	// DataBlocks and MapDigest summarise the point's block map of the
	// disk (its data blocks, and a digest of their numbers and hashes):
	// readers and verify recompute them from the index to find index
	// damage. Empty in points written before they were recorded.
	DataBlocks int64  `json:"data_blocks,omitempty"`
	MapDigest  string `json:"map_digest,omitempty"`
	// Content are the figures of DiskOptions.Content about the blocks
	// the point stored (backupd/anomaly). Empty in points written
	// without a meter.
	Content json.RawMessage `json:"content,omitempty"`
}

// Disk returns the named disk of the point.
func (p Point) Disk(name string) (DiskInfo, bool) {
	for _, d := range p.Disks {
		if d.Name == name {
			return d, true
		}
	}
	return DiskInfo{}, false
}

// StoredBytes is the sum of the bytes the point's disks added.
func (p Point) StoredBytes() int64 {
	var n int64
	for _, d := range p.Disks {
		n += d.StoredBytes
	}
	return n
}

// vmRecord is the per-VM state in the index.
type vmRecord struct {
	Name    string            `json:"name"`
	NextGen uint32            `json:"next_gen"`
	Disks   map[string]uint32 `json:"disks"`
}

// sessionRecord marks a generation being written; it is deleted by commit.
type sessionRecord struct {
	VM      string    `json:"vm"`
	Gen     uint32    `json:"gen"`
	Disks   []uint32  `json:"disks"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Purpose is PointOptions.Purpose ("cairn pull", "cairn import",
	// "cairn backup"): the sweep names what was interrupted. Session
	// files written before it was kept have none.
	Purpose string `json:"purpose,omitempty"`
}

// VMSummary is one VM in the catalog.
type VMSummary struct {
	Name   string  `json:"name"`
	Points []Point `json:"points"`
}

// Latest is the newest point of the VM by time (see Latest); ok is false
// when it has none.
func (v VMSummary) Latest() (Point, bool) {
	if len(v.Points) == 0 {
		return Point{}, false
	}
	return Latest(v.Points), true
}

// Catalog lists every VM that has recovery points, by name, with its points
// oldest first.
//
// A Repo keeps the catalog it read last while the repository's catalog
// sequence (catalog.seq) says nothing changed (catalogcache.go): a
// long-running process asking again gets it without reading the index.
func (r *Repo) Catalog(ctx context.Context) ([]VMSummary, error) {
	if vms, _, ok := r.cachedCatalog(); ok {
		return vms, nil
	}
	key, cacheable := r.catalogKey()
	var out []VMSummary
	err := r.view(ctx, func(db *badger.DB) error {
		var err error
		out, err = r.readCatalog(db)
		return err
	})
	if err == nil && cacheable {
		r.storeCatalog(key, out)
	}
	return out, err
}

func (r *Repo) readCatalog(db *badger.DB) ([]VMSummary, error) {
	byVM := map[string][]Point{}
	// A record read before with the same bytes (committed points never
	// change) is not decoded again (catalogcache.go).
	prev := r.catCache.decoded()
	next := make(map[string]decodedPoint, len(prev))
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixPoint}, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var p Point
			key := string(it.Item().Key())
			if err := it.Item().Value(func(v []byte) error {
				sum := crc32.Checksum(v, castagnoli)
				if d, ok := prev[key]; ok && d.sum == sum && d.size == len(v) {
					p = d.p
				} else {
					r.pointDecodes.Add(1)
					if err := json.Unmarshal(v, &p); err != nil {
						return err
					}
				}
				next[key] = decodedPoint{sum: sum, size: len(v), p: p}
				return nil
			}); err != nil {
				return fmt.Errorf("decode point record %q: %w", it.Item().Key(), err)
			}
			byVM[p.VM] = append(byVM[p.VM], p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	r.catCache.setDecoded(next)
	out := make([]VMSummary, 0, len(byVM))
	for name, pts := range byVM {
		sort.Slice(pts, func(i, j int) bool { return pts[i].Gen < pts[j].Gen })
		out = append(out, VMSummary{Name: name, Points: pts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Points lists the committed points of one VM, oldest first. A VM with no
// points gives an ErrNotFound error.
func (r *Repo) Points(ctx context.Context, vm string) ([]Point, error) {
	var pts []Point
	err := r.view(ctx, func(db *badger.DB) error {
		var err error
		pts, err = r.readPoints(db, vm)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(pts) == 0 {
		return nil, &PointNotFoundError{VM: vm}
	}
	return pts, nil
}

func (r *Repo) readPoints(db *badger.DB, vm string) ([]Point, error) {
	var pts []Point
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: vmGenPrefix(prefixPoint, vm), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var p Point
			r.pointDecodes.Add(1)
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &p) }); err != nil {
				return fmt.Errorf("decode point record of %s: %w", vm, err)
			}
			pts = append(pts, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read points of %s: %w", vm, err)
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].Gen < pts[j].Gen })
	return pts, nil
}

// ResolvePoint finds a point of a VM by id, "latest", or generation number.
func (r *Repo) ResolvePoint(ctx context.Context, vm, ref string) (Point, error) {
	pts, err := r.Points(ctx, vm)
	if err != nil {
		return Point{}, err
	}
	return FindPoint(pts, vm, ref)
}

// Latest returns the newest point of pts by time, the highest generation
// among points of one time; the zero Point when pts is empty. Generations
// follow time for points a repository backed up itself, but a point pulled
// from a remote gets the next generation whatever its time: pulling the
// latest point first and its history after it numbers the older points
// higher. "latest", the mount's latest link and retention go by time.
func Latest(pts []Point) Point {
	var best Point
	for i, p := range pts {
		if i == 0 || newerPoint(p, best) {
			best = p
		}
	}
	return best
}

// newerPoint reports whether a is newer than b: a later time, or the same
// time and a higher generation.
func newerPoint(a, b Point) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.Gen > b.Gen
}

// FindPoint picks a point from a list by id, "latest" (the newest by
// time, see Latest), or generation number.
func FindPoint(pts []Point, vm, ref string) (Point, error) {
	if len(pts) == 0 {
		return Point{}, &PointNotFoundError{VM: vm}
	}
	if ref == "" || ref == "latest" {
		return Latest(pts), nil
	}
	for _, p := range pts {
		if p.ID == ref {
			return p, nil
		}
	}
	if g, err := strconv.ParseUint(ref, 10, 32); err == nil {
		for _, p := range pts {
			if uint64(p.Gen) == g {
				return p, nil
			}
		}
	}
	return Point{}, &PointNotFoundError{VM: vm, Ref: ref}
}

func getJSON(txn *badger.Txn, key []byte, v any) (bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(key, b)
}

// readSessions returns every open session record.
func readSessions(txn *badger.Txn) ([]sessionRecord, error) {
	var out []sessionRecord
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixSession}, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var s sessionRecord
		if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &s) }); err != nil {
			return nil, fmt.Errorf("decode session record: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// uniquePointID makes a point id from a time, adding -2, -3, ... when the
// VM already has a point with that id.
func uniquePointID(t time.Time, existing []Point) string {
	base := t.UTC().Format(PointIDLayout)
	taken := map[string]bool{}
	for _, p := range existing {
		taken[p.ID] = true
	}
	id := base
	for n := 2; taken[id]; n++ {
		id = base + "-" + strconv.Itoa(n)
	}
	return id
}

func nextDiskID(txn *badger.Txn) (uint32, error) {
	var n uint32 = 1
	item, err := txn.Get([]byte(keyNextDiskID))
	switch {
	case err == nil:
		if err := item.Value(func(v []byte) error {
			if len(v) != 4 {
				return fmt.Errorf("disk id counter has %d bytes", len(v))
			}
			n = binary.BigEndian.Uint32(v)
			return nil
		}); err != nil {
			return 0, err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return 0, err
	}
	if err := txn.Set([]byte(keyNextDiskID), binary.BigEndian.AppendUint32(nil, n+1)); err != nil {
		return 0, err
	}
	return n, nil
}
