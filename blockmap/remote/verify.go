package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
)

// VerifyOptions choose what Verify reads.
type VerifyOptions struct {
	// SamplePercent in (0, 100) reads that share of the packs, chosen at
	// random; 0 or 100 reads every pack.
	SamplePercent float64
}

// BadBlock is a block of a remote point that cannot be read back.
type BadBlock struct {
	VM     string `json:"vm"`
	Point  string `json:"point"`
	Disk   string `json:"disk"`
	Offset int64  `json:"offset"`
	Pack   string `json:"pack"`
	Err    string `json:"error"`
}

// VerifyReport says what Verify read and what is wrong.
type VerifyReport struct {
	Points      int         `json:"points"`
	Packs       int         `json:"packs"`
	PacksRead   int         `json:"packs_read"`
	BlobsRead   int64       `json:"blobs_read"`
	BytesRead   int64       `json:"bytes_read"`
	BadObjects  []BadObject `json:"bad_objects,omitempty"`
	BadBlocks   []BadBlock  `json:"bad_blocks,omitempty"`
	BadPoints   []string    `json:"bad_points,omitempty"` // "vm point"
	OrphanPacks int         `json:"orphan_packs"`
	// MapsRead are the block map objects read (every one a point refers
	// to); OrphanMaps those no point refers to (an interrupted
	// replication's, or a pruned point's: prune deletes them).
	MapsRead   int `json:"maps_read"`
	OrphanMaps int `json:"orphan_maps"`
}

// OK is true when nothing is wrong.
func (v *VerifyReport) OK() bool { return len(v.BadObjects) == 0 && len(v.BadBlocks) == 0 }

// Verify reads back and authenticates every manifest and pack index and
// the blobs of every pack (or a sample of the packs), and names the
// points, disks and blocks that a damaged or missing object affects.
func (r *Remote) Verify(ctx context.Context, o VerifyOptions) (*VerifyReport, error) {
	ms, bad, err := r.manifests(ctx)
	if err != nil {
		return nil, err
	}
	rep := &VerifyReport{Points: len(ms), BadObjects: bad}
	// Every pack index must open and name what the manifests say.
	idxs, err := r.st.list(ctx, indexPrefix, false)
	if err != nil {
		return nil, err
	}
	packObjs, err := r.st.list(ctx, packPrefix, false)
	if err != nil {
		return nil, err
	}
	havePack := map[string]bool{}
	for _, p := range packObjs {
		havePack[strings.TrimPrefix(p.Name, packPrefix)] = true
	}
	for _, ob := range idxs {
		name := strings.TrimPrefix(ob.Name, indexPrefix)
		id, err := parseID(name)
		if err != nil {
			continue
		}
		err = r.readVersions(ctx, ob.Name, func(data []byte) error {
			_, err := r.openIndex(id, data)
			return err
		})
		if err != nil {
			rep.BadObjects = append(rep.BadObjects, BadObject{Object: ob.Name, Err: err.Error()})
		}
	}
	// Which blocks of which points live in each pack.
	type use struct {
		m    *manifest
		disk string
		e    blockEntry
	}
	type packUse struct {
		pk   manifestPack
		uses []use
	}
	byPack := map[string]*packUse{}
	// Each block map object is read and authenticated once (points are
	// sorted by VM and time, so those sharing a map come together); a
	// missing or damaged one is named with every point it leaves
	// unreadable.
	var lastMap string
	var lastMaps *pointMaps
	mapErr := map[string]error{}
	referencedMaps := map[string]bool{}
	var mapBad []string
	for _, m := range ms {
		maps := &pointMaps{m: m}
		if m.Map != nil {
			key := m.Map.ID + "@" + m.Map.Version
			referencedMaps[m.Map.ID] = true
			if err, ok := mapErr[key]; ok {
				if err != nil {
					mapBad = append(mapBad, m.Point.VM+" "+m.Point.ID)
					continue
				}
			}
			if key != lastMap || lastMaps == nil {
				lastMaps, err = r.openMaps(ctx, m)
				if err != nil {
					if errors.Is(err, ErrAccessDenied) || ctx.Err() != nil {
						return nil, err
					}
					mapErr[key] = err
					lastMap, lastMaps = "", nil
					rep.BadObjects = append(rep.BadObjects, BadObject{Object: m.Map.object(), Err: err.Error()})
					mapBad = append(mapBad, m.Point.VM+" "+m.Point.ID)
					continue
				}
				mapErr[key] = nil
				lastMap = key
			}
			rep.MapsRead = len(mapErr)
			maps = &pointMaps{m: m, disks: lastMaps.disks}
		}
		for i := range m.Disks {
			d := &m.Disks[i]
			es, err := maps.entries(d)
			if err != nil {
				rep.BadObjects = append(rep.BadObjects, BadObject{Object: pointsPrefix + r.keys.manifestName(m.Point.VM, m.Point.ID), Err: err.Error()})
				continue
			}
			for _, e := range es {
				pk := m.Packs[e.Pack]
				key := pk.ID + "@" + pk.Version
				pu := byPack[key]
				if pu == nil {
					pu = &packUse{pk: pk}
					byPack[key] = pu
				}
				pu.uses = append(pu.uses, use{m: m, disk: d.Name, e: e})
			}
		}
	}
	keys := make([]string, 0, len(byPack))
	referenced := map[string]bool{}
	for k, pu := range byPack {
		keys = append(keys, k)
		referenced[pu.pk.ID] = true
	}
	// A manifest of format 2 lists its map's whole pack table, which may
	// name packs none of the point's blocks use any more: prune keeps
	// them, so they are not orphans.
	for _, m := range ms {
		for _, pk := range m.Packs {
			referenced[pk.ID] = true
		}
	}
	sort.Strings(keys)
	for name := range havePack {
		if !referenced[name] {
			rep.OrphanPacks++
		}
	}
	rep.Packs = len(keys)
	if p := o.SamplePercent; p > 0 && p < 100 {
		rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		keys = keys[:max(1, int(float64(len(keys))*p/100+0.5))]
		sort.Strings(keys)
	}
	mapObjs, err := r.st.list(ctx, mapsPrefix, false)
	if err != nil {
		return nil, err
	}
	for _, ob := range mapObjs {
		if !referencedMaps[strings.TrimPrefix(ob.Name, mapsPrefix)] {
			rep.OrphanMaps++
		}
	}
	var mu sync.Mutex
	badPoint := map[string]bool{}
	for _, p := range mapBad {
		badPoint[p] = true
	}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pu := byPack[k]
		rep.PacksRead++
		// Each distinct blob once; its error is charged to every use.
		uniq := map[uint32]blockEntry{}
		usesOf := map[uint32][]use{}
		for _, u := range pu.uses {
			uniq[u.e.Off] = blockEntry{Pack: 0, Off: u.e.Off, Len: u.e.Len, Raw: u.e.Raw, ID: u.e.ID}
			usesOf[u.e.Off] = append(usesOf[u.e.Off], u)
		}
		es := make([]blockEntry, 0, len(uniq))
		for _, e := range uniq {
			es = append(es, e)
		}
		err := r.fetchBlobs(ctx, []manifestPack{pu.pk}, es, func(e blockEntry, data []byte, err error) error {
			mu.Lock()
			defer mu.Unlock()
			rep.BlobsRead++
			rep.BytesRead += int64(e.Len)
			if err == nil {
				return nil
			}
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
				return err // the store, not the object: stop
			}
			for _, u := range usesOf[e.Off] {
				rep.BadBlocks = append(rep.BadBlocks, BadBlock{VM: u.m.Point.VM, Point: u.m.Point.ID, Disk: u.disk,
					Offset: u.e.Block * int64(u.m.BlockSize), Pack: pu.pk.ID, Err: err.Error()})
				badPoint[u.m.Point.VM+" "+u.m.Point.ID] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("verify pack %s: %w", pu.pk.ID, err)
		}
	}
	for p := range badPoint {
		rep.BadPoints = append(rep.BadPoints, p)
	}
	sort.Strings(rep.BadPoints)
	sort.Slice(rep.BadBlocks, func(i, j int) bool {
		a, b := rep.BadBlocks[i], rep.BadBlocks[j]
		if a.VM+a.Point+a.Disk != b.VM+b.Point+b.Disk {
			return a.VM+"\x00"+a.Point+"\x00"+a.Disk < b.VM+"\x00"+b.Point+"\x00"+b.Disk
		}
		return a.Offset < b.Offset
	})
	return rep, nil
}
