package xfs

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// FuzzLogReplay opens a crashed image (dirty log, see crashedXFS) with
// bytes of its log flipped: record headers, cycle stamps, op headers and
// logged items. Open must replay, or ignore a log it cannot parse, and
// then read: never panic, never run unbounded.
func FuzzLogReplay(f *testing.F) {
	data := bytesReaderAt(readImage(f, crashedXFS(f, 48<<20, 60)))
	be := binary.BigEndian
	bs := int64(be.Uint32(data[4:]))
	logStart := int64(be.Uint64(data[48:]))
	agBlocks, agBlkLog := int64(be.Uint32(data[84:])), uint(data[124])
	logOff := ((logStart>>agBlkLog)*agBlocks + logStart&(1<<agBlkLog-1)) * bs
	logLen := int64(be.Uint32(data[96:])) * bs
	// Flips land in the written part of the log.
	var used []int64
	for off := logOff; off < logOff+logLen; off += bbSize {
		if be.Uint32(data[off:]) != 0 {
			used = append(used, off)
		}
	}
	if len(used) == 0 {
		f.Fatal("the crashed image's log is empty")
	}
	f.Add([]byte{})
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 30 {
		var seed []byte
		for range 1 + i%6 {
			seed = append(seed, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()))
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		patches := map[int64]byte{}
		for p := in; len(p) >= 4 && len(patches) < 32; p = p[4:] {
			at := used[(int(p[0])<<8|int(p[1]))%len(used)] + int64(p[2])%bbSize
			mask := p[3]
			if mask == 0 {
				mask = 0xff
			}
			patches[at] = mask
		}
		x, err := Open(&patchedImage{base: data, patches: patches}, 0, int64(len(data)))
		if err != nil {
			return
		}
		_, _ = x.(*xfs).LogReplay()
		_ = x.Info()
		if err := fuzzWalk(x); err != nil {
			t.Fatal(err)
		}
	})
}
