package fat_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/cairnbackup/cairn/partinfo/fat"
)

// TestFATByteFlipsNeverPanic flips bytes in the FAT, directories and
// boot sector of a real image (seeded, so failures reproduce) and walks
// the result with the raw reader: errors are fine, panics are not.
func TestFATByteFlipsNeverPanic(t *testing.T) {
	seed := buildSmallFAT(t, "12", "1", 128<<10)
	rng := rand.New(rand.NewPCG(7, 11))
	opened, failed := 0, 0
	for i := 0; i < 400; i++ {
		img := bytes.Clone(seed)
		for k := 0; k < 1+rng.IntN(16); k++ {
			// Metadata lives in the first 16 KiB of this tiny image.
			img[rng.IntN(16<<10)] = byte(rng.Uint32())
		}
		v, err := fat.Open(bytes.NewReader(img), 0, int64(len(img)))
		if err != nil {
			failed++
			continue
		}
		opened++
		exercise(v, v.Root(), 0)
	}
	if opened == 0 || failed == 0 {
		t.Errorf("probe did not cover both paths: %d opened, %d rejected", opened, failed)
	}
}
