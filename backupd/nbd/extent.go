package nbd

// Extent is a range of the export with the block status flags a metadata
// context gave it.
type Extent struct {
	Offset int64
	Length int64
	Flags  uint32
}

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// Hole reports NBD_STATE_HOLE (base:allocation): not allocated.
func (e Extent) Hole() bool { return e.Flags&StateHole != 0 }

// Zero reports NBD_STATE_ZERO (base:allocation): reads as zeros.
func (e Extent) Zero() bool { return e.Flags&StateZero != 0 }

// Dirty reports the dirty flag of a qemu:dirty-bitmap:NAME context.
func (e Extent) Dirty() bool { return e.Flags&StateDirty != 0 }

// appendExtent adds e to list, merging it into the last extent when they
// touch and carry the same flags.
func appendExtent(list []Extent, e Extent) []Extent {
	if e.Length <= 0 {
		return list
	}
	if n := len(list); n > 0 && list[n-1].End() == e.Offset && list[n-1].Flags == e.Flags {
		list[n-1].Length += e.Length
		return list
	}
	return append(list, e)
}
