package anomaly

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
)

// text is block-sized English-like text (source code and prose mixed).
func text(n int) []byte {
	words := strings.Fields("the quick brown fox jumps over the lazy dog func main return err if nil package import fmt Printf backup point disk block repository")
	r := mrand.New(mrand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(9) == 0 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

func deflated(n int) []byte {
	var b bytes.Buffer
	src := make([]byte, 4*n)
	r := mrand.New(mrand.NewPCG(3, 4))
	for i := range src { // mildly compressible: deflate output looks random
		src[i] = byte(r.IntN(64))
	}
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	w.Write(src)
	w.Close()
	for b.Len() < n {
		b.Write(b.Bytes())
	}
	return b.Bytes()[:n]
}

func TestHighSlices(t *testing.T) {
	random := make([]byte, 64<<10)
	rand.Read(random)
	half := append(text(32<<10), random[:32<<10]...)
	b64 := []byte(strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw==", 1000))[:64<<10]
	for _, c := range []struct {
		name string
		data []byte
		want int
	}{
		{"random", random, slices},
		{"deflate", deflated(64 << 10), slices},
		{"text", text(64 << 10), 0},
		{"base64", b64, 0},
		{"half text half random", half, 2},
		{"short random tail", random[:300], 0},
		{"one slice", random[:512], slices},
		{"short text tail", text(300), 0},
	} {
		if got := highSlices(c.data); got != c.want {
			t.Errorf("%s: %d of %d slices look encrypted, want %d", c.name, got, slices, c.want)
		}
	}
}

func TestMeterFigures(t *testing.T) {
	m := NewMeter()
	random := make([]byte, 64<<10)
	rand.Read(random)
	for i := 0; i < 3; i++ {
		m.Observe(text(64 << 10))
	}
	m.Observe(random)
	m.Observe(nil)
	var f Figures
	if err := json.Unmarshal(m.Figures(), &f); err != nil {
		t.Fatal(err)
	}
	if f.Version != 1 || f.WrittenBytes != 4*64<<10 || f.HighEntropyBytes != 64<<10 {
		t.Fatalf("figures %+v, want 256 KiB written of which 64 KiB high entropy", f)
	}
	if s := fmt.Sprintf("%.2f", f.Share()); s != "0.25" {
		t.Errorf("share %s, want 0.25", s)
	}
}

func BenchmarkObserve(b *testing.B) {
	block := make([]byte, 64<<10)
	rand.Read(block)
	m := NewMeter()
	b.SetBytes(int64(len(block)))
	for b.Loop() {
		m.Observe(block)
	}
}
