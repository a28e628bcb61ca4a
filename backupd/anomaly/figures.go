package anomaly

import (
	"encoding/json"

	"github.com/cairnbackup/cairn/blockmap"
)

// Figures are what a Meter measured of one disk of a point, or the sum
// over a point's disks.
type Figures struct {
	// Version of the measure (1: four 512-byte slices per block, 7 bits
	// per byte). Figures of another version are not compared.
	Version int `json:"v"`
	// WrittenBytes are the bytes of the changed, non-zero blocks stored.
	WrittenBytes int64 `json:"written_bytes"`
	// HighEntropyBytes are the part of them that looks encrypted or
	// compressed.
	HighEntropyBytes int64 `json:"high_entropy_bytes"`
}

// Share is the part of the written bytes that looks encrypted (0..1).
func (f Figures) Share() float64 {
	if f.WrittenBytes <= 0 {
		return 0
	}
	return float64(f.HighEntropyBytes) / float64(f.WrittenBytes)
}

// DiskFigures decodes the figures of a point's disk; ok is false when the
// disk has none (a point written before they were measured).
func DiskFigures(d blockmap.DiskInfo) (f Figures, ok bool) {
	if len(d.Content) == 0 || json.Unmarshal(d.Content, &f) != nil || f.Version != 1 {
		return Figures{}, false
	}
	return f, f.WrittenBytes >= 0 && f.HighEntropyBytes >= 0 && f.HighEntropyBytes <= f.WrittenBytes
}

// PointFigures sums the figures of p's disks that had an earlier
// version (a disk's first backup stores all of it: no change to judge).
// ok is false when no disk of p has comparable figures.
func PointFigures(p blockmap.Point) (f Figures, ok bool) {
	f.Version = 1
	for _, d := range p.Disks {
		if d.Lineage == p.Gen && p.Gen != 0 {
			continue // the disk's history begins with this point
		}
		df, dok := DiskFigures(d)
		if !dok {
			continue
		}
		f.WrittenBytes += df.WrittenBytes
		f.HighEntropyBytes += df.HighEntropyBytes
		ok = true
	}
	return f, ok
}
