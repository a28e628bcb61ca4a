package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// hashesByID is the sha256 of each point's disk by point id (generations
// differ between a repository and one that pulled from its remote).
func hashesByID(t *testing.T, repoDir, vm, disk string) map[string]string {
	t.Helper()
	out := map[string]string{}
	eachPointHash(t, repoDir, vm, disk, func(p blockmap.Point, sha string) { out[p.ID] = sha })
	return out
}

// checkRemoteAfterKill asserts that the remote verifies (no manifest
// names a missing pack or map, every blob authenticates) and lists only
// points the local repository has; it returns the ids listed.
func checkRemoteAfterKill(t *testing.T, repo, name string, local map[string]string, when string) map[string]bool {
	t.Helper()
	if res := runCairn(t, nil, "--repo", repo, "verify", "--remote", name); res.code != 0 {
		t.Fatalf("%s: verify --remote: exit %d\n%s%s", when, res.code, res.stdout, res.stderr)
	}
	listed := map[string]bool{}
	for _, p := range remotePoints(t, repo, name) {
		if _, ok := local[p.ID]; !ok || p.VM != "a" {
			t.Fatalf("%s: the remote lists %s %s, which was never replicated", when, p.VM, p.ID)
		}
		listed[p.ID] = true
	}
	return listed
}

// remoteExportSHA exports a remote point's disk and returns its sha256.
func remoteExportSHA(t *testing.T, repo, name, id string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "remote.img")
	mustCairn(t, "--repo", repo, "export", "--remote", name, "--vm", "a", "--point", id, "--disk", "d0", out)
	return fileSHA(t, out)
}

// TestRemoteKilled kills replicate, pull and prune --remote with SIGKILL
// at several moments each (fractions of an uninterrupted run of the same
// work against a second bucket) and checks the remote and the pulling
// repository after each kill; the next run of the same command finishes.
func TestRemoteKilled(t *testing.T) {
	f := newRemoteFixture(t)
	probe := newRemoteFixture(t) // the same work, uninterrupted, for the timing
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init", "--block-size", "65536")
	img := filepath.Join(dir, "a.img")
	makeImage(t, img, 32<<20)
	for i := range 5 {
		writeRandom(t, img, int64(i)*3<<20, 4<<20, uint64(60+i))
		mustCairn(t, "--repo", repo, "import", "--vm", "a", "--disk", "d0",
			"--time", time.Date(2026, 2, 1+i, 0, 0, 0, 0, time.UTC).Format(time.RFC3339), img)
	}
	local := hashesByID(t, repo, "a", "d0")
	f.add(t, repo, "off")
	probe.add(t, repo, "probe")
	mustCairn(t, "--repo", repo, "remote", "init", "off")
	mustCairn(t, "--repo", repo, "remote", "init", "probe")

	t.Run("replicate", func(t *testing.T) {
		full := timeRun(t, "--repo", repo, "replicate", "--remote", "probe")
		interrupted := 0
		for i, frac := range killFractions {
			if !killAfter(t, scaled(full, frac), "--repo", repo, "replicate", "--remote", "off") {
				interrupted++
			}
			checkRemoteAfterKill(t, repo, "off", local, "replicate killed at "+itoa(int64(i)))
			if res := runCairn(t, nil, "--repo", repo, "verify"); res.code != 0 {
				t.Fatalf("local verify after a killed replicate: %s%s", res.stdout, res.stderr)
			}
		}
		if interrupted == 0 {
			t.Fatal("no replicate was interrupted; the test proved nothing")
		}
		mustCairn(t, "--repo", repo, "replicate", "--remote", "off")
		listed := checkRemoteAfterKill(t, repo, "off", local, "replicate after the kills")
		if len(listed) != len(local) {
			t.Fatalf("%d points on the remote after the last replicate, want %d", len(listed), len(local))
		}
		for id, want := range local {
			if remoteExportSHA(t, repo, "off", id) != want {
				t.Fatalf("remote point %s differs from the local one", id)
			}
		}
		// Packs a killed run uploaded without their index stay until a
		// prune a day later (remote/prune.go orphanAge); they are never read.
		t.Logf("objects after the kills and a last replicate: %d; after one uninterrupted replicate: %d", f.objectCount(t), probe.objectCount(t))
		checkClean(t, repo)
	})

	t.Run("pull", func(t *testing.T) {
		timing := filepath.Join(t.TempDir(), "timing")
		mustCairn(t, "--repo", timing, "init", "--block-size", "65536")
		f.add(t, timing, "off")
		full := timeRun(t, "--repo", timing, "pull", "--remote", "off")
		pulled := filepath.Join(t.TempDir(), "pulled")
		mustCairn(t, "--repo", pulled, "init", "--block-size", "65536")
		f.add(t, pulled, "off")
		interrupted := 0
		for i, frac := range killFractions {
			if !killAfter(t, scaled(full, frac), "--repo", pulled, "pull", "--remote", "off") {
				interrupted++
			}
			when := "pull killed at " + itoa(int64(i))
			for id, got := range hashesByID(t, pulled, "a", "d0") {
				if got != local[id] {
					t.Fatalf("%s: pulled point %s is listed but is not the replicated point", when, id)
				}
			}
			if res := runCairn(t, nil, "--repo", pulled, "verify"); res.code != 0 || !strings.Contains(res.stdout, ": 0 bad") {
				t.Fatalf("%s: verify: %s%s", when, res.stdout, res.stderr)
			}
		}
		if interrupted == 0 {
			t.Fatal("no pull was interrupted; the test proved nothing")
		}
		mustCairn(t, "--repo", pulled, "pull", "--remote", "off")
		got := hashesByID(t, pulled, "a", "d0")
		if len(got) != len(local) {
			t.Fatalf("%d points after the last pull, want %d", len(got), len(local))
		}
		for id, want := range local {
			if got[id] != want {
				t.Fatalf("pulled point %s differs", id)
			}
		}
		checkClean(t, pulled)
	})

	// pull into a repository whose filesystem fills: a clear error naming
	// it, the points pulled before are whole, the next pull (once there is
	// room) finishes.
	t.Run("pull to a full filesystem", func(t *testing.T) {
		testutil.RequireRoot(t)
		mnt := mountSmall(t, 64)
		pulled := filepath.Join(mnt, "repo")
		mustCairn(t, "--repo", pulled, "init", "--block-size", "65536")
		f.add(t, pulled, "off")
		filler := fillTo(t, mnt, 8<<20)
		res := runCairn(t, nil, "--repo", pulled, "pull", "--remote", "off")
		if res.code == 0 || !strings.Contains(res.stderr, "no space left on device") || !strings.Contains(res.stderr, "the filesystem mounted at "+mnt) {
			t.Fatalf("pull to a full filesystem: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		got := hashesByID(t, pulled, "a", "d0")
		for id, h := range got {
			if h != local[id] {
				t.Fatalf("point %s listed after a pull that ran out of space is not the replicated point", id)
			}
		}
		if len(got) == len(local) {
			t.Fatal("every point was pulled into a filesystem without room for them")
		}
		if res := runCairn(t, nil, "--repo", pulled, "verify"); res.code != 0 {
			t.Fatalf("verify after a pull that ran out of space: %s%s", res.stdout, res.stderr)
		}
		os.Remove(filler)
		mustCairn(t, "--repo", pulled, "pull", "--remote", "off")
		if got := hashesByID(t, pulled, "a", "d0"); len(got) != len(local) {
			t.Fatalf("%d points after the pull with room, want %d", len(got), len(local))
		}
		checkClean(t, pulled)
	})

	// prune --remote: the points the policy keeps stay readable, the
	// remote verifies after every kill, and the next prune finishes.
	t.Run("remote prune", func(t *testing.T) {
		full := timeRun(t, "--repo", repo, "prune", "--remote", "probe", "--keep-last", "4")
		ids := make([]string, 0, len(local))
		for _, p := range listPoints(t, repo, "a") {
			ids = append(ids, p.ID) // oldest first
		}
		for i, keep := range []int{4, 3, 2} {
			args := []string{"--repo", repo, "prune", "--remote", "off", "--keep-last", itoa(int64(keep))}
			killAfter(t, scaled(full, killFractions[(2*i+1)%len(killFractions)]), args...)
			when := "prune --remote killed at " + itoa(int64(i))
			listed := checkRemoteAfterKill(t, repo, "off", local, when)
			kept := ids[len(ids)-keep:]
			for _, id := range kept {
				if !listed[id] {
					t.Fatalf("%s: point %s, which the policy keeps, is gone", when, id)
				}
			}
			if remoteExportSHA(t, repo, "off", kept[0]) != local[kept[0]] {
				t.Fatalf("%s: kept point %s changed", when, kept[0])
			}
			mustCairn(t, args...)
			if listed := checkRemoteAfterKill(t, repo, "off", local, when+", then run again"); len(listed) != keep {
				t.Fatalf("%s: %d points after the next prune, want %d", when, len(listed), keep)
			}
		}
		if remoteExportSHA(t, repo, "off", ids[len(ids)-1]) != local[ids[len(ids)-1]] {
			t.Fatal("the newest remote point changed")
		}
	})
}
