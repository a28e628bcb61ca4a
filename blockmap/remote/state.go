package remote

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/cairnbackup/cairn/blockmap"
)

// pointState is what the replicating machine remembers of a point it
// copied: the local generation of each block. A later point of the VM
// whose block has the same generation has the same bytes, so that block
// is not read again; its blob is taken from the earlier point's manifest.
type pointState struct {
	Gen   uint32            `json:"generation"`
	ID    string            `json:"id"`
	Disks map[string][]byte `json:"disks"` // little-endian uint32 per block
}

func (r *Remote) stateDir(cacheDir, vm string) string {
	return filepath.Join(cacheDir, "points", r.keys.manifestName(vm, ""))
}

func (r *Remote) saveState(cacheDir string, p blockmap.Point, gens map[string][]uint32) error {
	dir := r.stateDir(cacheDir, p.VM)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st := pointState{Gen: p.Gen, ID: p.ID, Disks: map[string][]byte{}}
	for d, g := range gens {
		b := make([]byte, 4*len(g))
		for i, v := range g {
			binary.LittleEndian.PutUint32(b[4*i:], v)
		}
		st.Disks[d] = b
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, strconv.FormatUint(uint64(p.Gen), 10))
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// prevPoint is an earlier copied point of the same VM, with its manifest.
type prevPoint struct {
	gens map[string][]uint32
	m    *manifest
	// entries per disk by block number
	entries map[string]map[int64]blockEntry
}

// loadPrev finds the newest point of p's VM older than p that this
// machine copied and the remote still has. Nothing found is not an error:
// then every block is read.
func (r *Remote) loadPrev(ctx context.Context, cacheDir string, p blockmap.Point, present map[string]bool) *prevPoint {
	dir := r.stateDir(cacheDir, p.VM)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var gens []uint64
	for _, e := range ents {
		if g, err := strconv.ParseUint(e.Name(), 10, 32); err == nil && uint32(g) < p.Gen {
			gens = append(gens, g)
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] > gens[j] })
	for _, g := range gens {
		data, err := os.ReadFile(filepath.Join(dir, strconv.FormatUint(g, 10)))
		if err != nil {
			continue
		}
		var st pointState
		if json.Unmarshal(data, &st) != nil {
			continue
		}
		name := r.keys.manifestName(p.VM, st.ID)
		if !present[name] {
			continue
		}
		m, err := r.readManifest(ctx, name)
		if err != nil || m.Point.Gen != st.Gen {
			continue
		}
		pp := &prevPoint{gens: map[string][]uint32{}, m: m, entries: map[string]map[int64]blockEntry{}}
		for d, b := range st.Disks {
			g := make([]uint32, len(b)/4)
			for i := range g {
				g[i] = binary.LittleEndian.Uint32(b[4*i:])
			}
			pp.gens[d] = g
		}
		ok := true
		for _, md := range m.Disks {
			es, err := decodeBlocks(md.Blocks, md.Count, len(m.Packs))
			if err != nil {
				ok = false
				break
			}
			by := make(map[int64]blockEntry, len(es))
			for _, e := range es {
				by[e.Block] = e
			}
			pp.entries[md.Name] = by
		}
		if ok {
			r.log.Debug("replicating changes since an earlier copied point", "vm", p.VM, "point", p.ID, "since", st.ID)
			return pp
		}
	}
	return nil
}

// reuse returns the blob of block b of disk when the earlier point holds
// the same generation of it and its pack is still on the remote.
func (pp *prevPoint) reuse(disk string, b int64, gen uint32, cache *blockCache) (blobRef, ID, bool) {
	if pp == nil || gen == 0 {
		return blobRef{}, ID{}, false
	}
	g := pp.gens[disk]
	if b >= int64(len(g)) || g[b] != gen {
		return blobRef{}, ID{}, false
	}
	e, ok := pp.entries[disk][b]
	if !ok {
		return blobRef{}, ID{}, false
	}
	pk, err := parseID(pp.m.Packs[e.Pack].ID)
	if err != nil {
		return blobRef{}, ID{}, false
	}
	if v, ok := cache.version(pk); !ok || v != pp.m.Packs[e.Pack].Version {
		return blobRef{}, ID{}, false
	}
	return blobRef{Pack: pk, Off: e.Off, Len: e.Len, Raw: e.Raw}, e.ID, true
}
