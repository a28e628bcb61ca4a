package anomaly

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// Verdict statuses.
const (
	Normal     = "normal"
	Suspicious = "suspicious"
	NoBaseline = "no-baseline"
)

// Thresholds decide when a point's changes are suspicious. The zero value
// of a field means its default (DefaultThresholds).
type Thresholds struct {
	// Disabled turns judging off: points get no verdict.
	Disabled bool `yaml:"disabled" json:"disabled,omitempty"`
	// MinBytes is the absolute floor: fewer high-entropy bytes than this
	// are never suspicious (default 64 MiB).
	MinBytes int64 `yaml:"min_bytes" json:"min_bytes,omitempty"`
	// MinShare is the least share of the written bytes that must look
	// encrypted, in percent (default 50).
	MinShare float64 `yaml:"min_share" json:"min_share,omitempty"`
	// ShareRise is how many percentage points the share must exceed the
	// VM's usual share by (default 25).
	ShareRise float64 `yaml:"share_rise" json:"share_rise,omitempty"`
	// VolumeFactor: the high-entropy bytes must be at least this many
	// times the VM's usual (median) amount (default 4).
	VolumeFactor float64 `yaml:"volume_factor" json:"volume_factor,omitempty"`
	// BaselinePoints is how many of the VM's recent points make its
	// baseline (default 14); MinBaseline how many are needed before a
	// point is judged at all (default 3).
	BaselinePoints int `yaml:"baseline_points" json:"baseline_points,omitempty"`
	MinBaseline    int `yaml:"min_baseline" json:"min_baseline,omitempty"`
}

// DefaultThresholds are the thresholds of a job that sets none.
var DefaultThresholds = Thresholds{MinBytes: 64 << 20, MinShare: 50, ShareRise: 25, VolumeFactor: 4, BaselinePoints: 14, MinBaseline: 3}

// ErrBadThreshold: a threshold is out of its range.
var ErrBadThreshold = errors.New("invalid anomaly threshold")

// WithDefaults fills the unset fields from DefaultThresholds.
func (t Thresholds) WithDefaults() Thresholds {
	d := DefaultThresholds
	if t.MinBytes == 0 {
		t.MinBytes = d.MinBytes
	}
	if t.MinShare == 0 {
		t.MinShare = d.MinShare
	}
	if t.ShareRise == 0 {
		t.ShareRise = d.ShareRise
	}
	if t.VolumeFactor == 0 {
		t.VolumeFactor = d.VolumeFactor
	}
	if t.BaselinePoints == 0 {
		t.BaselinePoints = d.BaselinePoints
	}
	if t.MinBaseline == 0 {
		t.MinBaseline = d.MinBaseline
	}
	return t
}

// Validate names the first threshold out of range.
func (t Thresholds) Validate() error {
	switch {
	case t.MinBytes < 0:
		return fmt.Errorf("%w: min_bytes %d is negative", ErrBadThreshold, t.MinBytes)
	case t.MinShare < 0 || t.MinShare > 100:
		return fmt.Errorf("%w: min_share %g is not a percentage (0-100)", ErrBadThreshold, t.MinShare)
	case t.ShareRise < 0 || t.ShareRise > 100:
		return fmt.Errorf("%w: share_rise %g is not a number of percentage points (0-100)", ErrBadThreshold, t.ShareRise)
	case t.VolumeFactor < 0:
		return fmt.Errorf("%w: volume_factor %g is negative", ErrBadThreshold, t.VolumeFactor)
	case t.BaselinePoints < 0 || t.BaselinePoints > 1000:
		return fmt.Errorf("%w: baseline_points %d is not between 1 and 1000", ErrBadThreshold, t.BaselinePoints)
	case t.MinBaseline < 0 || t.MinBaseline > max(t.WithDefaults().BaselinePoints, 1):
		return fmt.Errorf("%w: min_baseline %d must be between 1 and baseline_points (%d)", ErrBadThreshold, t.MinBaseline, t.WithDefaults().BaselinePoints)
	}
	return nil
}

// Verdict is what the judge said of one point (blockmap.Point.Verdict).
type Verdict struct {
	Status string `json:"status"`
	// Reason is one line a human can act on.
	Reason string `json:"reason"`
	// The point's figures, and the baseline's: its number of points,
	// share of high-entropy bytes and median high-entropy and written
	// bytes per point.
	WrittenBytes      int64   `json:"written_bytes"`
	HighEntropyBytes  int64   `json:"high_entropy_bytes"`
	BaselinePoints    int     `json:"baseline_points"`
	BaselineShare     float64 `json:"baseline_share"`
	BaselineHighBytes int64   `json:"baseline_high_entropy_bytes"`
	BaselineWritten   int64   `json:"baseline_written_bytes"`
}

// ReadVerdict decodes a point's verdict; ok is false when it has none.
func ReadVerdict(p blockmap.Point) (v Verdict, ok bool) {
	if len(p.Verdict) == 0 || json.Unmarshal(p.Verdict, &v) != nil || v.Status == "" {
		return Verdict{}, false
	}
	return v, true
}

// Judge decides the verdict of point p against history, the VM's earlier
// points (any order; p itself and newer points are ignored), with acks
// (suspicious points acknowledged as false alarms count in the baseline).
func Judge(p blockmap.Point, history []blockmap.Point, acks Acks, t Thresholds) Verdict {
	t = t.WithDefaults()
	f, ok := PointFigures(p)
	if !ok {
		return Verdict{Status: NoBaseline, Reason: "no figures to judge: every disk of the point is backed up for the first time (it stores all of it) or was stored without measuring"}
	}
	v := Verdict{WrittenBytes: f.WrittenBytes, HighEntropyBytes: f.HighEntropyBytes}
	now := fmt.Sprintf("%s of %s changed looks encrypted", pct(f.Share()), bytesize.IEC(f.WrittenBytes))
	var base []Figures
	older := make([]blockmap.Point, 0, len(history))
	for _, h := range history {
		if h.Gen != p.Gen && !h.Time.After(p.Time) {
			older = append(older, h)
		}
	}
	sort.Slice(older, func(i, j int) bool { return older[i].Time.After(older[j].Time) })
	for _, h := range older {
		if len(base) == t.BaselinePoints {
			break
		}
		if hv, ok := ReadVerdict(h); ok && hv.Status == Suspicious && !acks.Acked(h.VM, h.ID) {
			continue // an unacknowledged alarm is no one's usual
		}
		if hf, ok := PointFigures(h); ok {
			base = append(base, hf)
		}
	}
	v.BaselinePoints = len(base)
	if len(base) < t.MinBaseline {
		v.Status = NoBaseline
		v.Reason = fmt.Sprintf("%s; not judged: this VM has %d earlier point(s) with figures, %d needed", now, len(base), t.MinBaseline)
		return v
	}
	var sumW, sumH int64
	highs := make([]int64, len(base))
	writes := make([]int64, len(base))
	for i, b := range base {
		sumW += b.WrittenBytes
		sumH += b.HighEntropyBytes
		highs[i], writes[i] = b.HighEntropyBytes, b.WrittenBytes
	}
	v.BaselineShare = 0
	if sumW > 0 {
		v.BaselineShare = float64(sumH) / float64(sumW)
	}
	v.BaselineHighBytes, v.BaselineWritten = median(highs), median(writes)
	usual := fmt.Sprintf("this VM's usual: %s of %s over its last %d points", pct(v.BaselineShare), bytesize.IEC(v.BaselineWritten), len(base))
	share := f.Share() * 100
	suspicious := f.HighEntropyBytes >= t.MinBytes &&
		share >= t.MinShare &&
		share >= v.BaselineShare*100+t.ShareRise &&
		float64(f.HighEntropyBytes) >= t.VolumeFactor*float64(v.BaselineHighBytes)
	v.Status, v.Reason = Normal, now+"; "+usual
	if suspicious {
		v.Status = Suspicious
	}
	return v
}

func median(v []int64) int64 {
	s := append([]int64(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func pct(f float64) string {
	return fmt.Sprintf("%.0f %%", f*100)
}

// JudgeFunc returns the blockmap.PointOptions.Judge of new points, with
// acks and t: nil when t is Disabled.
func JudgeFunc(acks Acks, t Thresholds) func(p blockmap.Point, earlier []blockmap.Point) json.RawMessage {
	if t.Disabled {
		return nil
	}
	return func(p blockmap.Point, earlier []blockmap.Point) json.RawMessage {
		b, _ := json.Marshal(Judge(p, earlier, acks, t))
		return b
	}
}
