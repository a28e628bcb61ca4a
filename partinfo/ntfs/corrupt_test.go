package ntfs_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/cairnbackup/cairn/partinfo/ntfs"
)

// TestNTFSByteFlipsNeverPanic flips bytes in the MFT and boot sector of a
// real mkntfs image (seeded) and walks it: errors are fine, panics are not.
// Iteration 65 of this seed once took a minute: a corrupt
// $INDEX_ALLOCATION size made go-ntfs step through terabytes of sparse
// index; indexEntries now walks only mapped ranges.
func TestNTFSByteFlipsNeverPanic(t *testing.T) {
	seed := buildSmallNTFS(t)
	mftOff := int64(binary.LittleEndian.Uint64(seed[0x30:])) * 512
	rng := rand.New(rand.NewPCG(3, 5))
	opened := 0
	for i := 0; i < 300; i++ {
		img := bytes.Clone(seed)
		for k := 0; k < 1+rng.IntN(24); k++ {
			if rng.IntN(8) == 0 {
				img[rng.IntN(512)] = byte(rng.Uint32())
			} else {
				img[mftOff+int64(rng.IntN(48<<10))] = byte(rng.Uint32())
			}
		}
		v, err := ntfs.Open(bytes.NewReader(img), 0, int64(len(img)))
		if err != nil {
			continue
		}
		opened++
		walk(v, v.Root(), 0)
	}
	if opened == 0 {
		t.Errorf("no corrupted image opened: the probe exercised nothing past Open")
	}
}
