package blockmap

import "sort"

// span is the range of generations whose block versions one point sees for
// one disk: its own generation down to the start of the disk's lineage.
// A version of generation g is part of the point when from <= g <= to and
// no newer version in that range exists for its block.
type span struct {
	from, to uint32
}

// diskSpan is the span of disk d in point p. The lineage starts at the
// point where the disk id last began anew (a first backup of the disk, or
// the disk coming back after points without it); points written before
// lineages were recorded (Lineage 0) see every older version.
func diskSpan(p Point, d DiskInfo) span {
	return span{from: d.Lineage, to: p.Gen}
}

// diskSpans lists the spans of disk id in the given points (those that
// hold it), sorted by their last generation.
func diskSpans(pts []Point, id uint32) []span {
	var out []span
	for _, p := range pts {
		for _, d := range p.Disks {
			if d.ID == id {
				out = append(out, diskSpan(p, d))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].to < out[j].to })
	return out
}

// visible reports whether the version of generation g, whose next newer
// version has generation newer (0 when none), is seen by one of the
// spans (sorted by to): some span with from <= g <= to < newer.
func visible(spans []span, g, newer uint32) bool {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].to >= g })
	for ; i < len(spans); i++ {
		s := spans[i]
		if newer != 0 && s.to >= newer {
			return false // every later span sees the newer version instead
		}
		if s.from <= g {
			return true
		}
	}
	return false
}
