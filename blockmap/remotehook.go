package blockmap

import "slices"

// BlockGens returns, per block of the disk, the generation whose delta
// image holds the block's data at this point (0 for a hole). Equal
// generations of one block in two points of a VM mean equal bytes, so the
// remote replication reads only blocks whose generation changed since a
// point it already copied.
func (dr *DiskReader) BlockGens() []uint32 { return slices.Clone(dr.gens) }
