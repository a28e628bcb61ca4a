package vmdkstream

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// BenchmarkWrite streams 32 MiB of random (incompressible) and of
// text-like data with one and with several compressing goroutines.
func BenchmarkWrite(b *testing.B) {
	const size = 32 << 20
	rng := rand.New(rand.NewPCG(5, 6))
	random := make([]byte, size)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	var text bytes.Buffer
	words := []string{"the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog\n", "cairn ", "backup "}
	for text.Len() < size {
		text.WriteString(words[rng.IntN(len(words))])
	}
	for _, d := range []struct {
		name string
		data []byte
	}{{"random", random}, {"text", text.Bytes()[:size]}} {
		for _, w := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers=%d", d.name, w), func(b *testing.B) {
				b.SetBytes(size)
				for b.Loop() {
					if _, err := Write(io.Discard, bytes.NewReader(d.data), size, []Extent{{0, size}}, Options{Workers: w}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
