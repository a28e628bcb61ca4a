package remote

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/blockmap"
)

// Block maps of format 2 (manifestFormatMap).
//
// A point's full block map (every data block of every disk → pack,
// offset, length, size, id) lives in its own object, cairn/maps/<random
// id>, encrypted and compressed like a manifest. A manifest refers to one
// map object (mapRef) and holds, per disk, only the delta on it: the
// blocks whose entry differs from the map's and the blocks the map holds
// that the point does not (removed: zeroed or trimmed). Depth one: a
// delta is always on a full map, never on another delta. Replicate writes
// a new full map when the delta would exceed fullMapShare of it, when a
// disk was added, removed or resized, or when there is no map to start
// from (see newFullMap).
//
// The map's entries number packs by their place in its own pack table,
// which is the prefix of every referring manifest's Packs (the manifest
// appends the packs only its delta uses), so manifest.Packs lists every
// pack the point may read and prune, extend and stats need no map object.

const mapsPrefix = prefix + "maps/"

// Manifest formats: 1 holds each disk's full block map inline; 2 refers to
// a map object and holds a delta on it.
const (
	manifestFormatInline = 1
	manifestFormatMap    = 2
)

// fullMapShare: a point whose delta on its map would hold more entries
// than this share of the map's gets a new full map. 20 %: with a share T
// and c of the blocks changed per point, a delta grows by about c per
// point until it reaches T, so a map plus its deltas cost on average
// N*(c/T + T/2) per point (N: a full map), least at T = sqrt(2c) — 14 %
// for 1 % a day, 20 % for 2 % — and at T = 20 % within 6-25 % of that
// least for 0.5-5 % a day; a reader decodes at most 20 % more entries than
// a full map holds.
const fullMapShare = 0.20

// mapRef is a manifest's reference to its full map object.
type mapRef struct {
	ID      string `json:"id"`
	Version string `json:"version,omitempty"`
	// Packs is the size of the map's pack table: manifest.Packs[:Packs].
	Packs int `json:"packs"`
}

func (m mapRef) object() string { return mapsPrefix + m.ID }

// mapDisk is one disk's full block map in a map object.
type mapDisk struct {
	Name   string
	Size   int64
	Count  int
	Blocks []byte // encodeBlocks
}

const mapMagic = "CRNMAP1\n"

func encodeMap(packs int, disks []mapDisk) []byte {
	var b bytes.Buffer
	b.WriteString(mapMagic)
	b.Write(binary.AppendUvarint(nil, uint64(packs)))
	b.Write(binary.AppendUvarint(nil, uint64(len(disks))))
	for _, d := range disks {
		b.Write(binary.AppendUvarint(nil, uint64(len(d.Name))))
		b.WriteString(d.Name)
		b.Write(binary.AppendUvarint(nil, uint64(d.Size)))
		b.Write(binary.AppendUvarint(nil, uint64(d.Count)))
		b.Write(binary.AppendUvarint(nil, uint64(len(d.Blocks))))
		b.Write(d.Blocks)
	}
	return b.Bytes()
}

// decodeMap splits a map object's plaintext into its disks (their Blocks
// point into data).
func decodeMap(data []byte) (int, []mapDisk, error) {
	bad := fmt.Errorf("%w: block map", ErrFormat)
	if !bytes.HasPrefix(data, []byte(mapMagic)) {
		return 0, nil, bad
	}
	p := data[len(mapMagic):]
	uv := func() (uint64, bool) {
		x, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return x, true
	}
	packs, ok1 := uv()
	nd, ok2 := uv()
	if !ok1 || !ok2 || packs > 1<<31-1 || nd > uint64(len(p)) {
		return 0, nil, bad
	}
	disks := make([]mapDisk, 0, nd)
	for range nd {
		nl, ok := uv()
		if !ok || nl > uint64(len(p)) {
			return 0, nil, bad
		}
		d := mapDisk{Name: string(p[:nl])}
		p = p[nl:]
		size, ok1 := uv()
		cnt, ok2 := uv()
		bl, ok3 := uv()
		if !ok1 || !ok2 || !ok3 || size > 1<<62 || cnt > 1<<40 || bl > uint64(len(p)) {
			return 0, nil, bad
		}
		d.Size, d.Count, d.Blocks = int64(size), int(cnt), p[:bl]
		p = p[bl:]
		disks = append(disks, d)
	}
	if len(p) != 0 {
		return 0, nil, bad
	}
	return int(packs), disks, nil
}

// sealMap compresses and encrypts a map object's plaintext; its name is
// authenticated with it.
func (r *Remote) sealMap(id ID, plain []byte) []byte {
	return seal(r.keys.aead, nil, r.fast.EncodeAll(plain, nil), []byte("map\x00"+id.String()))
}

// readMap reads, authenticates and splits map object ref (at the version
// written). Its errors name the object.
func (r *Remote) readMap(ctx context.Context, ref mapRef) ([]mapDisk, error) {
	id, err := parseID(ref.ID)
	if err != nil {
		return nil, fmt.Errorf("block map %s: %w: bad id", ref.object(), ErrFormat)
	}
	var disks []mapDisk
	use := func(data []byte) error {
		plain, err := open(r.keys.aead, nil, data, []byte("map\x00"+id.String()))
		if err != nil {
			return fmt.Errorf("block map %s: %w", ref.object(), ErrCorrupt)
		}
		js, err := r.dec.DecodeAll(plain, nil)
		if err != nil {
			return fmt.Errorf("block map %s: %w: %v", ref.object(), ErrFormat, err)
		}
		packs, ds, err := decodeMap(js)
		if err != nil {
			return fmt.Errorf("block map %s: %w", ref.object(), err)
		}
		if packs != ref.Packs {
			return fmt.Errorf("block map %s: %w: %d packs, the manifest says %d", ref.object(), ErrCorrupt, packs, ref.Packs)
		}
		disks = ds
		return nil
	}
	if ref.Version == "" {
		err = r.readVersions(ctx, ref.object(), use)
	} else {
		var data []byte
		if data, err = r.st.get(ctx, ref.object(), ref.Version, 0, 0); err == nil {
			return disks, use(data)
		}
	}
	if errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("block map %s: %w", ref.object(), ErrNotFound)
	}
	return disks, err
}

// encodeDelta writes a delta: sorted entries, Pack -1 for a block the
// map holds and the point does not.
func encodeDelta(es []blockEntry) []byte {
	var b []byte
	prev := int64(-1)
	for _, e := range es {
		b = binary.AppendUvarint(b, uint64(e.Block-prev))
		b = binary.AppendUvarint(b, uint64(e.Pack+1))
		if e.Pack >= 0 {
			b = binary.AppendUvarint(b, uint64(e.Off))
			b = binary.AppendUvarint(b, uint64(e.Len))
			b = binary.AppendUvarint(b, uint64(e.Raw))
			b = append(b, e.ID[:]...)
		}
		prev = e.Block
	}
	return b
}

func decodeDelta(b []byte, count, npacks int) ([]blockEntry, error) {
	bad := fmt.Errorf("%w: manifest block map delta", ErrFormat)
	if count < 0 || count > len(b) {
		return nil, bad
	}
	out := make([]blockEntry, 0, count)
	prev := int64(-1)
	for len(b) > 0 {
		gap, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, bad
		}
		b = b[n:]
		pk, n := binary.Uvarint(b)
		if n <= 0 || gap == 0 || gap > 1<<62 || prev+int64(gap) < prev || pk > uint64(npacks) {
			return nil, bad
		}
		b = b[n:]
		e := blockEntry{Block: prev + int64(gap), Pack: int32(pk) - 1}
		if e.Pack >= 0 {
			var v [3]uint64
			for i := range v {
				x, n := binary.Uvarint(b)
				if n <= 0 || x > 1<<32-1 {
					return nil, bad
				}
				v[i], b = x, b[n:]
			}
			if len(b) < 32 {
				return nil, bad
			}
			e.Off, e.Len, e.Raw = uint32(v[0]), uint32(v[1]), uint32(v[2])
			copy(e.ID[:], b)
			b = b[32:]
		}
		prev = e.Block
		out = append(out, e)
	}
	if len(out) != count {
		return nil, fmt.Errorf("%w: manifest block map delta holds %d entries, header says %d", ErrFormat, len(out), count)
	}
	return out, nil
}

// diffMap returns the delta that turns base into es (both sorted).
func diffMap(base, es []blockEntry) []blockEntry {
	var d []blockEntry
	i, j := 0, 0
	for i < len(base) || j < len(es) {
		switch {
		case j == len(es) || i < len(base) && base[i].Block < es[j].Block:
			d = append(d, blockEntry{Block: base[i].Block, Pack: -1})
			i++
		case i == len(base) || es[j].Block < base[i].Block:
			d = append(d, es[j])
			j++
		default:
			if base[i] != es[j] {
				d = append(d, es[j])
			}
			i++
			j++
		}
	}
	return d
}

// mergeDelta decodes a map's encoded entries and applies a delta while
// decoding: the result is the point's map, and the map's entries are never
// all held twice.
func mergeDelta(base []byte, baseCount, basePacks int, delta []blockEntry) ([]blockEntry, error) {
	adds := 0
	for _, e := range delta {
		if e.Pack >= 0 {
			adds++
		}
	}
	if baseCount < 0 || baseCount > len(base) {
		return nil, fmt.Errorf("%w: block map count", ErrFormat)
	}
	out := make([]blockEntry, 0, baseCount+adds)
	dec := blockDecoder{b: base, prev: -1, npacks: basePacks}
	k := 0
	n := 0
	for {
		e, ok, err := dec.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		n++
		for k < len(delta) && delta[k].Block < e.Block {
			if delta[k].Pack >= 0 {
				out = append(out, delta[k])
			}
			k++
		}
		if k < len(delta) && delta[k].Block == e.Block {
			if delta[k].Pack >= 0 {
				out = append(out, delta[k])
			}
			k++
			continue
		}
		out = append(out, e)
	}
	for ; k < len(delta); k++ {
		if delta[k].Pack >= 0 {
			out = append(out, delta[k])
		}
	}
	if n != baseCount {
		return nil, fmt.Errorf("%w: block map holds %d blocks, header says %d", ErrFormat, n, baseCount)
	}
	return out, nil
}

// blockDecoder decodes encodeBlocks' entries one at a time.
type blockDecoder struct {
	b      []byte
	prev   int64
	npacks int
}

func (d *blockDecoder) next() (blockEntry, bool, error) {
	if len(d.b) == 0 {
		return blockEntry{}, false, nil
	}
	var v [5]uint64
	for i := range v {
		x, n := binary.Uvarint(d.b)
		if n <= 0 {
			return blockEntry{}, false, fmt.Errorf("%w: manifest block map", ErrFormat)
		}
		v[i], d.b = x, d.b[n:]
	}
	// Blocks strictly increase (readers binary-search them): a delta
	// of 0 or one that wraps is damage.
	if len(d.b) < 32 || v[0] == 0 || v[0] > 1<<62 || d.prev+int64(v[0]) < d.prev || v[1] >= uint64(d.npacks) || v[1] > 1<<31-1 || v[2] > 1<<32-1 || v[3] > 1<<32-1 || v[4] > 1<<32-1 {
		return blockEntry{}, false, fmt.Errorf("%w: manifest block map", ErrFormat)
	}
	e := blockEntry{Block: d.prev + int64(v[0]), Pack: int32(v[1]), Off: uint32(v[2]), Len: uint32(v[3]), Raw: uint32(v[4])}
	copy(e.ID[:], d.b)
	d.b = d.b[32:]
	d.prev = e.Block
	return e, true, nil
}

// pointMaps opens the block maps of one point's disks: for a manifest of
// format 2 it reads the map object once (and keeps only its plaintext,
// about 36 bytes a block, until dropped).
type pointMaps struct {
	m     *manifest
	disks map[string]mapDisk
}

func (r *Remote) openMaps(ctx context.Context, m *manifest) (*pointMaps, error) {
	pm := &pointMaps{m: m}
	if m.Format != manifestFormatMap {
		return pm, nil
	}
	ds, err := r.readMap(ctx, *m.Map)
	if err != nil {
		return nil, fmt.Errorf("point %s of %s: %w", m.Point.ID, m.Point.VM, err)
	}
	pm.disks = map[string]mapDisk{}
	for _, d := range ds {
		pm.disks[d.Name] = d
	}
	return pm, nil
}

// entries returns disk's map: block → (pack in m.Packs, blob, id).
func (pm *pointMaps) entries(md *manifestDisk) ([]blockEntry, error) {
	m := pm.m
	if m.Format != manifestFormatMap {
		return decodeBlocks(md.Blocks, md.Count, len(m.Packs))
	}
	base, ok := pm.disks[md.Name]
	if !ok {
		return nil, fmt.Errorf("%w: block map %s lacks disk %s of point %s of %s", ErrFormat, m.Map.object(), md.Name, m.Point.ID, m.Point.VM)
	}
	delta, err := decodeDelta(md.Delta, md.DeltaCount, len(m.Packs))
	if err != nil {
		return nil, err
	}
	return mergeDelta(base.Blocks, base.Count, m.Map.Packs, delta)
}

// replMaps is a copied point's block maps as replicate keeps them for the
// VM's next point: the full map's entries and the point's delta on it
// (both sorted), so it holds the map once, not once per point.
type replMaps struct {
	ref   *mapRef // nil: a format 1 manifest (base is its inline map)
	sizes map[string]int64
	base  map[string][]blockEntry
	delta map[string][]blockEntry
}

// lookup returns block b's entry of disk in the point.
func (rm *replMaps) lookup(disk string, b int64) (blockEntry, bool) {
	if d := rm.delta[disk]; len(d) > 0 {
		k := sort.Search(len(d), func(i int) bool { return d[i].Block >= b })
		if k < len(d) && d[k].Block == b {
			return d[k], d[k].Pack >= 0
		}
	}
	return findEntry(rm.base[disk], b)
}

// loadReplMaps decodes m's maps for replicate; nil when one does not
// decode or its map object cannot be read (then every block is read).
func (r *Remote) loadReplMaps(ctx context.Context, m *manifest) *replMaps {
	rm := &replMaps{ref: m.Map, sizes: map[string]int64{}, base: map[string][]blockEntry{}, delta: map[string][]blockEntry{}}
	if m.Format != manifestFormatMap {
		for _, md := range m.Disks {
			es, err := decodeBlocks(md.Blocks, md.Count, len(m.Packs))
			if err != nil {
				return nil
			}
			rm.base[md.Name] = es
			rm.sizes[md.Name] = md.Size
		}
		return rm
	}
	ds, err := r.readMap(ctx, *m.Map)
	if err != nil {
		r.log.Warn("cannot read the earlier point's block map; its blocks are read again", "err", err)
		return nil
	}
	for _, d := range ds {
		es, err := decodeBlocks(d.Blocks, d.Count, m.Map.Packs)
		if err != nil {
			return nil
		}
		rm.base[d.Name] = es
		rm.sizes[d.Name] = d.Size
	}
	for _, md := range m.Disks {
		d, err := decodeDelta(md.Delta, md.DeltaCount, len(m.Packs))
		if err != nil {
			return nil
		}
		rm.delta[md.Name] = d
	}
	return rm
}

// canDeltaOn says whether a point with disks (name → size) can be written
// as a delta on rm's map: rm is a map object's and holds the same disks
// with the same sizes.
func (rm *replMaps) canDeltaOn(disks map[string]int64) bool {
	if rm == nil || rm.ref == nil || len(rm.sizes) != len(disks) {
		return false
	}
	for n, s := range disks {
		if bs, ok := rm.sizes[n]; !ok || bs != s {
			return false
		}
	}
	return true
}

// attachMaps puts the disks' maps (entries, in p.Disks order, numbering
// packs in m.Packs) into the manifest: as a delta on the earlier point's
// map object when that is small enough, else as a new full map object,
// stored (with the retention) before the manifest that refers to it is
// written. It returns the maps the VM's next point starts from.
func (r *Remote) attachMaps(ctx context.Context, m *manifest, p blockmap.Point, entries [][]blockEntry, prev *prevPoint, st *ReplicateStats) (*replMaps, error) {
	sizes := map[string]int64{}
	byName := map[string][]blockEntry{}
	for i, d := range p.Disks {
		sizes[d.Name] = d.Size
		byName[d.Name] = entries[i]
	}
	if r.inlineMaps {
		m.Format, m.Map = manifestFormatInline, nil
		for i, d := range p.Disks {
			m.Disks = append(m.Disks, manifestDisk{Name: d.Name, Size: d.Size, Blocks: encodeBlocks(entries[i]), Count: len(entries[i])})
		}
		return &replMaps{sizes: sizes, base: byName}, nil
	}
	m.Format = manifestFormatMap
	if prev != nil && prev.maps.canDeltaOn(sizes) {
		base := prev.maps
		deltas := map[string][]blockEntry{}
		n, total := 0, 0
		for i, d := range p.Disks {
			deltas[d.Name] = diffMap(base.base[d.Name], entries[i])
			n += len(deltas[d.Name])
			total += len(base.base[d.Name])
		}
		if float64(n) <= fullMapShare*float64(total) {
			ref := *base.ref
			m.Map = &ref
			for _, d := range p.Disks {
				m.Disks = append(m.Disks, manifestDisk{Name: d.Name, Size: d.Size, Delta: encodeDelta(deltas[d.Name]), DeltaCount: len(deltas[d.Name])})
			}
			r.log.Debug("replicate: block maps as a delta", "vm", p.VM, "point", p.ID, "entries", n, "map_entries", total, "map", ref.ID)
			return &replMaps{ref: m.Map, sizes: base.sizes, base: base.base, delta: deltas}, nil
		}
		r.log.Debug("replicate: delta too large, new full map", "vm", p.VM, "point", p.ID, "entries", n, "map_entries", total)
	}
	// A new full map: its pack table is the packs its entries use, in
	// order (packs of an older map that no block uses any more drop out).
	remap := make([]int32, len(m.Packs))
	for i := range remap {
		remap[i] = -1
	}
	var packs []manifestPack
	disks := make([]mapDisk, 0, len(p.Disks))
	for i, d := range p.Disks {
		for k := range entries[i] {
			e := &entries[i][k]
			if remap[e.Pack] < 0 {
				remap[e.Pack] = int32(len(packs))
				packs = append(packs, m.Packs[e.Pack])
			}
			e.Pack = remap[e.Pack]
		}
		disks = append(disks, mapDisk{Name: d.Name, Size: d.Size, Count: len(entries[i]), Blocks: encodeBlocks(entries[i])})
	}
	m.Packs = packs
	id := randomID()
	sealed := r.sealMap(id, encodeMap(len(packs), disks))
	disks = nil
	v, err := r.st.put(ctx, mapsPrefix+id.String(), sealed, putOptions{retainUntil: retainUntil(r.opts.ImmutableDays)})
	if err != nil {
		return nil, fmt.Errorf("store block map: %w", err)
	}
	st.BytesUploaded += int64(len(sealed))
	st.MapBytes += int64(len(sealed))
	st.Maps++
	m.Map = &mapRef{ID: id.String(), Version: v, Packs: len(packs)}
	for _, d := range p.Disks {
		m.Disks = append(m.Disks, manifestDisk{Name: d.Name, Size: d.Size})
	}
	r.log.Debug("replicate: new full block map stored", "vm", p.VM, "point", p.ID, "bytes", len(sealed), "map", m.Map.ID)
	return &replMaps{ref: m.Map, sizes: sizes, base: byName, delta: map[string][]blockEntry{}}, nil
}

// diskEntries returns the map of disk md of point m, reading its map
// object when it has one.
func (r *Remote) diskEntries(ctx context.Context, m *manifest, md *manifestDisk) ([]blockEntry, error) {
	pm, err := r.openMaps(ctx, m)
	if err != nil {
		return nil, err
	}
	return pm.entries(md)
}
