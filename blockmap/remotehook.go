package blockmap

// BlockGens returns, per block of the disk, the generation whose delta
// image holds the block's data at this point (0 for a hole). Equal
// generations of one block in two points of a VM mean equal bytes, so the
// remote replication reads only blocks whose generation changed since a
// point it already copied.
//
// Unlike the reader's own map, the result has one entry per block of the
// disk's capacity (4 bytes per block): a caller replicating very large
// sparse disks pays for their size.
func (dr *DiskReader) BlockGens() []uint32 {
	gens := make([]uint32, dr.n)
	for _, r := range dr.m.runs {
		for b := r.first; b < r.end() && b < dr.n; b++ {
			gens[b] = r.gen
		}
	}
	return gens
}
