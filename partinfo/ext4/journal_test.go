package ext4

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestJournalReplay takes a crash-consistent copy of a mounted filesystem
// (committed by fsync, not yet checkpointed: needs_recovery is set and the
// newest metadata lives only in the journal), and checks the in-memory
// replay against the kernel's own recovery of the same copy.
func TestJournalReplay(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mount", "umount", "cp")
	ram := ramDir(t)
	img := filepath.Join(ram, "live.img")
	makeImage(t, img, 256<<20, "mkfs.ext4", "-U", testUUID)
	mnt, _ := loopMount(t, img, false)
	buildTree(t, mnt, treeOptions{bigFile: 1 << 20, smallFiles: 300, bigDir: 500})
	fh, err := os.Open(filepath.Join(mnt, "data", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil { // commits the running transaction
		t.Fatal(err)
	}
	fh.Close()
	crash := filepath.Join(ram, "crash.img")
	runCmd(t, "cp", "--sparse=always", img, crash)

	f := openImage(t, crash)
	blocks, jerr := f.JournalReplay()
	if jerr != nil || blocks == 0 {
		t.Fatalf("journal replay: %d blocks, %v", blocks, jerr)
	}
	if want := fmt.Sprintf("journal replayed: %d blocks", blocks); f.Info().Recovered != want {
		t.Errorf("Info().Recovered = %q, want %q", f.Info().Recovered, want)
	}
	changed := 0
	for _, b := range f.journal.blocks {
		onDisk := make([]byte, f.sb.blockSize)
		replayed := make([]byte, f.sb.blockSize)
		if err := f.readRaw(onDisk, int64(b)*f.sb.blockSize); err != nil {
			t.Fatal(err)
		}
		if err := f.readFull(replayed, int64(b)*f.sb.blockSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onDisk, replayed) {
			changed++
		}
	}
	t.Logf("journal supplies %d blocks, %d differ from the on-disk copy", blocks, changed)

	// The kernel's recovery of the same bytes is the reference.
	recovered := filepath.Join(ram, "recovered.img")
	runCmd(t, "cp", "--sparse=always", crash, recovered)
	rmnt, unmount := loopMount(t, recovered, false) // rw mount replays the journal
	unmount()
	rmnt, _ = loopMount(t, recovered, true)
	st := compareWithKernel(t, f, rmnt)
	if st.files < 300 {
		t.Errorf("compared only %+v", st)
	}
}
