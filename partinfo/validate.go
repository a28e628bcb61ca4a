package partinfo

import (
	"fmt"
	"sort"
)

// validate flags partitions that lie outside the disk or overlap each
// other. Findings are recorded on the partitions, never fatal. The MBR
// extended container is only checked against primaries.
func validate(t *Table) {
	for i := range t.Partitions {
		p := &t.Partitions[i]
		if p.Size <= 0 {
			p.Problems = append(p.Problems, "has zero size")
		}
		if p.Start < 0 || p.Start+p.Size > t.DiskSize {
			p.Problems = append(p.Problems, fmt.Sprintf("extends past the end of the disk (%d bytes)", t.DiskSize))
		}
	}
	idx := make([]int, len(t.Partitions))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return t.Partitions[idx[a]].Start < t.Partitions[idx[b]].Start })
	for a := 0; a < len(idx); a++ {
		for b := a + 1; b < len(idx); b++ {
			p, q := &t.Partitions[idx[a]], &t.Partitions[idx[b]]
			if q.Start >= p.Start+p.Size {
				break
			}
			if (p.Extended && q.Logical) || (q.Extended && p.Logical) {
				continue
			}
			p.Problems = append(p.Problems, fmt.Sprintf("overlaps %s", q.Label()))
			q.Problems = append(q.Problems, fmt.Sprintf("overlaps %s", p.Label()))
		}
	}
}
