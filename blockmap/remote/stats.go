package remote

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// VMStats is what a remote holds of one VM.
type VMStats struct {
	VM     string    `json:"vm"`
	Points int       `json:"points"`
	Oldest time.Time `json:"oldest"`
	Newest time.Time `json:"newest"`
	// LogicalBytes is the data (non-zero blocks) of the VM's points,
	// summed over the points: what restoring each of them would read.
	LogicalBytes int64 `json:"logical_bytes"`
}

// Stats is what a remote holds, computed from its listings and manifests
// (no pack or index is read).
type Stats struct {
	Points int       `json:"points"`
	VMs    []VMStats `json:"vms"`
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
	// Packs and PackBytes are the objects under cairn/packs/ and the sum
	// of their sizes: the stored data.
	Packs     int   `json:"packs"`
	PackBytes int64 `json:"pack_bytes"`
	// Indexes, Manifests and Maps (full block map objects) count the
	// other objects; StoredBytes is the sum of every object's size
	// (packs, indexes, manifests, maps, config;
	// latest versions only: older versions kept by a versioned bucket are
	// not listed).
	Indexes       int   `json:"indexes"`
	IndexBytes    int64 `json:"index_bytes"`
	Manifests     int   `json:"manifests"`
	ManifestBytes int64 `json:"manifest_bytes"`
	Maps          int   `json:"maps"`
	MapBytes      int64 `json:"map_bytes"`
	StoredBytes   int64 `json:"stored_bytes"`
	// LogicalBytes is the data of every point (sum over points of their
	// non-zero blocks); Ratio is LogicalBytes / PackBytes: deduplication
	// and compression together.
	LogicalBytes int64   `json:"logical_bytes"`
	Ratio        float64 `json:"ratio"`
	// UnreferencedPacks are packs no readable manifest refers to (left by
	// an interrupted replication, or freed by forgotten points still under
	// retention): prune --remote deletes them when it may.
	UnreferencedPacks int   `json:"unreferenced_packs"`
	UnreferencedBytes int64 `json:"unreferenced_bytes"`
	// ImmutableDays is the Object Lock retention cairn gives new objects
	// (0: none of its own).
	ImmutableDays int `json:"immutable_days"`
	// Bucket is the bucket's Object Lock configuration: its default
	// retention applies to every object written without one of its own
	// (nil: the store did not say).
	Bucket *Retention `json:"bucket,omitempty"`
	// Unreadable are manifests that cannot be read (their points are not
	// counted).
	Unreadable []BadObject `json:"unreadable,omitempty"`
	// Requests counts the requests Stats made: list pages and one GET per
	// manifest (opening the remote cost one more GET, of its config).
	Requests int `json:"requests"`
}

// listPage is the number of keys a store returns per list request.
const listPage = 1000

// Stats reports what the remote holds: points per VM, packs and their
// bytes, the points' logical bytes and the ratio of the two. It lists
// the bucket's cairn/ objects (latest versions: one request per 1,000
// objects), lists cairn/points/ and reads every manifest (one GET each)
// and every block map object they name (one GET each); no pack or index
// is read.
func (r *Remote) Stats(ctx context.Context) (*Stats, error) {
	st := &Stats{ImmutableDays: r.opts.ImmutableDays}
	pages := func(n int) int { return max(1, (n+listPage-1)/listPage) }
	objs, err := r.st.list(ctx, prefix, false)
	if err != nil {
		return nil, err
	}
	ms, bad, err := r.manifests(ctx)
	if err != nil {
		return nil, err
	}
	st.Requests = pages(len(objs)) + pages(len(ms)+len(bad)) + len(ms) + len(bad)
	st.Unreadable = bad
	var packs []objectInfo
	for _, o := range objs {
		st.StoredBytes += o.Size
		switch {
		case strings.HasPrefix(o.Name, packPrefix):
			packs = append(packs, o)
			st.Packs++
			st.PackBytes += o.Size
		case strings.HasPrefix(o.Name, indexPrefix):
			st.Indexes++
			st.IndexBytes += o.Size
		case strings.HasPrefix(o.Name, pointsPrefix):
			st.Manifests++
			st.ManifestBytes += o.Size
		case strings.HasPrefix(o.Name, mapsPrefix):
			st.Maps++
			st.MapBytes += o.Size
		}
	}
	used := map[string]bool{}
	maps := map[string]map[string]mapDisk{} // map objects read, by id
	for _, m := range ms {
		for _, p := range m.Packs {
			used[p.ID] = true
		}
		logical, err := r.logicalBytes(ctx, m, maps)
		if err != nil {
			return nil, err
		}
		p := m.Point
		if n := len(st.VMs); n == 0 || st.VMs[n-1].VM != p.VM {
			st.VMs = append(st.VMs, VMStats{VM: p.VM, Oldest: p.Time, Newest: p.Time})
		}
		v := &st.VMs[len(st.VMs)-1]
		v.Points++
		v.LogicalBytes += logical
		if p.Time.Before(v.Oldest) {
			v.Oldest = p.Time
		}
		if p.Time.After(v.Newest) {
			v.Newest = p.Time
		}
		if st.Points == 0 || p.Time.Before(st.Oldest) {
			st.Oldest = p.Time
		}
		if st.Points == 0 || p.Time.After(st.Newest) {
			st.Newest = p.Time
		}
		st.Points++
		st.LogicalBytes += logical
	}
	st.Requests += len(maps)
	if ret, err := r.BucketRetention(ctx); err == nil {
		st.Bucket = &ret
	} else {
		r.log.Debug("bucket object lock configuration unknown", "error", err)
	}
	st.Requests++
	if len(bad) == 0 {
		for _, o := range packs {
			if !used[strings.TrimPrefix(o.Name, packPrefix)] {
				st.UnreferencedPacks++
				st.UnreferencedBytes += o.Size
			}
		}
	}
	if st.PackBytes > 0 {
		st.Ratio = float64(st.LogicalBytes) / float64(st.PackBytes)
	}
	return st, nil
}

// logicalBytes is the plaintext bytes of a point's data blocks: summed
// from the inline maps of a format 1 manifest, from its map object (read
// once per object into maps) and delta in format 2.
func (r *Remote) logicalBytes(ctx context.Context, m *manifest, maps map[string]map[string]mapDisk) (int64, error) {
	var logical int64
	if m.Format != manifestFormatMap {
		for _, d := range m.Disks {
			n, err := dataBytes(d.Blocks)
			if err != nil {
				return 0, fmt.Errorf("point %s of %s: disk %s: %w", m.Point.ID, m.Point.VM, d.Name, err)
			}
			logical += n
		}
		return logical, nil
	}
	disks, ok := maps[m.Map.ID]
	if !ok {
		pm, err := r.openMaps(ctx, m)
		if err != nil {
			return 0, err
		}
		disks, maps[m.Map.ID] = pm.disks, pm.disks
	}
	pm := &pointMaps{m: m, disks: disks}
	for i := range m.Disks {
		es, err := pm.entries(&m.Disks[i])
		if err != nil {
			return 0, fmt.Errorf("point %s of %s: disk %s: %w", m.Point.ID, m.Point.VM, m.Disks[i].Name, err)
		}
		for _, e := range es {
			logical += int64(e.Raw)
		}
	}
	return logical, nil
}

// dataBytes sums the plaintext lengths of a manifest disk's block map
// without decoding it into entries (see encodeBlocks).
func dataBytes(b []byte) (int64, error) {
	var n int64
	for len(b) > 0 {
		var v [5]uint64
		for i := range v {
			x, k := binary.Uvarint(b)
			if k <= 0 {
				return 0, fmt.Errorf("%w: manifest block map", ErrFormat)
			}
			v[i], b = x, b[k:]
		}
		if len(b) < 32 {
			return 0, fmt.Errorf("%w: manifest block map", ErrFormat)
		}
		b = b[32:]
		n += int64(v[4])
	}
	return n, nil
}
