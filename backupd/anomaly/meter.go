package anomaly

import (
	"encoding/json"
	"math"
	"sync/atomic"
)

// Sampling of a block: slices of sliceLen bytes, spread evenly.
const (
	slices   = 4
	sliceLen = 512
	// highBits is the byte entropy (bits per byte) of a slice from which
	// it looks encrypted or compressed. Uniform random bytes measure about
	// 7.6 on 512 bytes (the estimate is biased low on small samples),
	// deflate output about the same; English text 4-5, base64 at most 6.
	highBits = 7.0
)

// nlogn[c] is c*log2(c), for the entropy of a slice's byte histogram.
var nlogn = func() (t [sliceLen + 1]float32) {
	for c := 2; c <= sliceLen; c++ {
		t[c] = float32(float64(c) * math.Log2(float64(c)))
	}
	return t
}()

// Meter measures the data blocks a point stores for one disk (a
// blockmap.ContentMeter). Its methods are safe for concurrent use.
type Meter struct {
	written, high atomic.Int64
}

// NewMeter returns a meter with nothing counted.
func NewMeter() *Meter { return &Meter{} }

// Observe counts one stored block.
func (m *Meter) Observe(block []byte) {
	n := len(block)
	if n == 0 {
		return
	}
	m.written.Add(int64(n))
	if h := highSlices(block); h > 0 {
		m.high.Add(int64(n) * int64(h) / slices)
	}
}

// highSlices is how many of the block's sample slices look encrypted or
// compressed (0..slices).
func highSlices(block []byte) int {
	n := len(block)
	if n < sliceLen {
		return 0 // too few bytes to tell (only ever a disk's short last block)
	}
	step := (n - sliceLen) / (slices - 1)
	high := 0
	for i := 0; i < slices; i++ {
		off := i * step
		if entropy(block[off:off+sliceLen]) >= highBits {
			high++
		}
	}
	return high
}

// entropy is the Shannon entropy of p's bytes in bits per byte (p holds
// at most sliceLen bytes).
func entropy(p []byte) float64 {
	if len(p) == 0 {
		return 0
	}
	// Two histograms, for even and odd bytes: a run of one byte value
	// (common in text and metadata) then does not make every increment
	// wait for the one before it.
	var h0, h1 [256]uint16
	i := 0
	for ; i+1 < len(p); i += 2 {
		h0[p[i]]++
		h1[p[i+1]]++
	}
	if i < len(p) {
		h0[p[i]]++
	}
	var s float32
	for b := range h0 {
		s += nlogn[h0[b]+h1[b]]
	}
	n := float64(len(p))
	return math.Log2(n) - float64(s)/n
}

// Figures returns what the meter counted, as kept with the point.
func (m *Meter) Figures() json.RawMessage {
	b, _ := json.Marshal(Figures{Version: 1, WrittenBytes: m.written.Load(), HighEntropyBytes: m.high.Load()})
	return b
}
