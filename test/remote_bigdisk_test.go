package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// remoteBigDiskSize is the logical size of the sparse disk replicated by
// TestRemoteSparseDisk.
const remoteBigDiskSize = int64(1) << 50 // 1 PiB

// remoteBigDiskRSSLimit bounds the peak RSS of every cairn process in
// TestRemoteSparseDisk: generous against the 92-114 MiB measured (most of
// it Badger and the argon2id key derivation), far
// below what per-block state costs (4 bytes a block: 64 GiB for 1 PiB;
// at 4 TiB the old per-block state peaked at 1.4-1.9 GiB).
const remoteBigDiskRSSLimit = 256 << 20

// TestRemoteSparseDisk replicates a 1 PiB sparse disk holding 3 MiB to
// the real RGW, then a second point with 64 KiB changed high up (which
// must read only the changed block), exports the remote point and pulls
// both into a new repository. Every cairn process must stay under
// remoteBigDiskRSSLimit: replication state, the remote reader and pull
// are sized by the data, not by the disk's capacity.
func TestRemoteSparseDisk(t *testing.T) {
	testutil.RequireRoot(t)
	f := newRemoteFixture(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", "-l", dir).Run()
	size := remoteBigDiskSize
	src := filepath.Join(dir, "src.img")
	makeImage(t, src, size)
	areas := []int64{0, size / 2, size - 1<<20}
	for i, off := range areas {
		writeRandom(t, src, off, 1<<20, uint64(i+1))
	}
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "import", "--vm", "big", "--disk", "d0", src)
	f.add(t, repo, "off")
	mustCairn(t, "--repo", repo, "remote", "init", "off")

	type stats struct {
		Stats struct {
			BlocksRead      int64 `json:"blocks_read"`
			BlocksUnchanged int64 `json:"blocks_unchanged"`
			BlocksNew       int64 `json:"blocks_new"`
		} `json:"stats"`
	}
	rss := map[string]int64{}
	replicate := func(what string) stats {
		out, n := runCairnRSS(t, "--repo", repo, "replicate", "--remote", "off", "--json")
		rss[what] = n
		var st stats
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("replicate --json: %v\n%s", err, out)
		}
		t.Logf("%s: %+v", what, st.Stats)
		return st
	}
	if st := replicate("replicate (first)"); st.Stats.BlocksRead != 48 {
		t.Fatalf("first replication read %d blocks, want the 48 data blocks", st.Stats.BlocksRead)
	}
	high := size - 64<<20
	writeRandom(t, src, high, 64<<10, 10)
	mustCairn(t, "--repo", repo, "import", "--vm", "big", "--disk", "d0", "--changed", fmt.Sprintf("%d:%d", high, 64<<10), src)
	if st := replicate("replicate (incremental)"); st.Stats.BlocksRead != 1 || st.Stats.BlocksUnchanged != 48 {
		t.Fatalf("incremental replication read %d blocks and reused %d; want 1 read, 48 reused", st.Stats.BlocksRead, st.Stats.BlocksUnchanged)
	}

	out := filepath.Join(dir, "out.img")
	_, rss["export --remote"] = runCairnRSS(t, "--repo", repo, "export", "--remote", "off", "--vm", "big", "--point", "latest", "--disk", "d0", out)
	for _, off := range append(areas, high) {
		compareRange(t, src, out, off, 1<<20)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != size {
		t.Fatalf("exported image: %v, size %v", err, fi)
	}
	os.Remove(out)

	repo2 := filepath.Join(dir, "pulled")
	mustCairn(t, "--repo", repo2, "init")
	f.add(t, repo2, "off")
	_, rss["pull"] = runCairnRSS(t, "--repo", repo2, "pull", "--remote", "off")
	mustCairn(t, "--repo", repo2, "export", "--vm", "big", "--disk", "d0", out)
	for _, off := range append(areas, high) {
		compareRange(t, src, out, off, 1<<20)
	}

	for what, n := range rss {
		t.Logf("peak RSS of cairn %s with a %d TiB disk: %d MiB", what, size>>40, n>>20)
		if n > remoteBigDiskRSSLimit {
			t.Errorf("cairn %s peaked at %d MiB RSS with a %d TiB disk holding 3 MiB (limit %d MiB)", what, n>>20, size>>40, remoteBigDiskRSSLimit>>20)
		}
	}
}
