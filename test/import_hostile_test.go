package test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/nbd/nbdtest"
)

// hostileRSSLimit bounds the peak RSS of `cairn import` from a hostile
// NBD server (a memory bound, not a timing).
const hostileRSSLimit = 512 << 20

// TestImportFromHostileNBDServers imports from NBD servers that speak the
// protocol wrongly in each way issue 12 found: the import never hangs
// past its stall timeout (a 2-minute guard kills a hung one and fails),
// never grows memory without bound, and never stores a point, except
// from the server whose extreme but legal 1-byte extents it reads whole
// (widened) and stores exactly.
func TestImportFromHostileNBDServers(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	cases := []struct {
		name string
		mode nbdtest.Mode
		size uint64
		want string // in the one-line error; "" for success
	}{
		{"endless error chunks", nbdtest.EndlessErrorChunks, 8 << 20, "protocol error"},
		{"endless chunks for an unknown context", nbdtest.EndlessUnknownContext, 8 << 20, "not negotiated"},
		{"silent handshake", nbdtest.SilentHandshake, 8 << 20, "no NBD handshake"},
		{"stall mid reply", nbdtest.StallMidReply, 8 << 20, "stalled"},
		{"absurd export size", nbdtest.AbsurdSize, 0, "larger than the largest disk"},
		{"1-byte extents", nbdtest.TinyExtents, 64 << 20, ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sock := filepath.Join(dir, "s"+string(rune('a'+i))+".sock")
			srv, err := nbdtest.Start(sock, c.mode, c.size)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			vm := "vm" + string(rune('a'+i))
			res, rss := runCairnGuarded(t, 2*time.Minute, 0, "--repo", repo, "import", "--vm", vm, "--disk", "d0",
				"--nbd-stall-timeout", "2s", nbd.UnixTarget(sock, "").String())
			t.Logf("peak RSS %d MiB", rss>>20)
			if rss > hostileRSSLimit {
				t.Errorf("cairn import peaked at %d MiB RSS", rss>>20)
			}
			if c.want == "" {
				if res.code != 0 {
					t.Fatalf("import: exit %d: %s", res.code, res.stderr)
				}
				out := filepath.Join(dir, vm+".img")
				mustCairn(t, "--repo", repo, "export", "--vm", vm, "--disk", "d0", out)
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				want := make([]byte, c.size)
				for off := range want {
					want[off] = srv.Byte(uint64(off))
				}
				if !bytes.Equal(got, want) {
					t.Errorf("the point differs from what the server serves")
				}
				return
			}
			if res.code == 0 {
				t.Fatalf("import from a hostile server succeeded: %s", res.stdout)
			}
			lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
			if last := lines[len(lines)-1]; !strings.Contains(last, c.want) || strings.Contains(res.stderr, "panic") {
				t.Errorf("error %q, want one naming %q", last, c.want)
			}
			if pts := listPoints(t, repo, vm); len(pts) != 0 {
				t.Errorf("a hostile server's import stored %d points", len(pts))
			}
		})
	}
	checkClean(t, repo)
}
