package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestInitPlaces: init refuses a file, a directory inside another
// repository (whose size and files it would then take for its own), and
// takes a relative path and $CAIRN_REPO.
func TestInitPlaces(t *testing.T) {
	dir := t.TempDir()
	outer := filepath.Join(dir, "outer")
	if res := runCairn(t, nil, "--repo", outer, "init"); res.code != 0 || !strings.Contains(res.stdout, " of it is "+outer+"/reserve, space kept free for prune and forget") {
		t.Fatalf("init: exit %d: %s%s (want it to name the reserve)", res.code, res.stdout, res.stderr)
	}
	for _, inner := range []string{filepath.Join(outer, "sub"), filepath.Join(outer, "images", "x")} {
		res := runCairn(t, nil, "--repo", inner, "init")
		requireOneLineError(t, res, "inside the repository "+outer)
		if _, err := os.Stat(inner); !os.IsNotExist(err) {
			t.Errorf("refused init left %s: %v", inner, err)
		}
	}
	// --repo naming a directory of a repository points at the repository.
	requireOneLineError(t, runCairn(t, nil, "--repo", filepath.Join(outer, "images"), "points"), "inside the repository "+outer+": use --repo "+outer)
	requireOneLineError(t, runCairn(t, nil, "--repo", filepath.Join(outer, "cairn.json"), "points"), "inside the repository "+outer+": use --repo "+outer)
	file := filepath.Join(dir, "afile")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	requireOneLineError(t, runCairn(t, nil, "--repo", file, "init"), "is a file, not a directory")
	requireOneLineError(t, runCairn(t, nil, "--repo", file, "points"), "is a file: not a cairn repository (a repository is a directory) (give --repo the repository's directory)")

	// A hash name init does not know: the names it takes, not advice for
	// opening a repository another cairn made.
	res := runCairn(t, nil, "--repo", filepath.Join(dir, "h"), "init", "--hash", "SHA1")
	requireOneLineError(t, res, `block hash "SHA1": use blake3 or sha256`)
	if strings.Contains(res.stderr, "the cairn that made") {
		t.Errorf("init --hash SHA1: %s", res.stderr)
	}

	// The directory as an argument (the first guess) says how to give it.
	requireOneLineError(t, runCairn(t, nil, "init", filepath.Join(dir, "arg")), "run `cairn --repo "+filepath.Join(dir, "arg")+" init`")
	requireOneLineError(t, runCairn(t, nil, "--repo", filepath.Join(dir, "r2"), "init", "extra"), `unexpected argument "extra"`)
	for _, p := range []string{"arg", "r2"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("refused init made %s: %v", p, err)
		}
	}

	// A relative path and $CAIRN_REPO.
	cmd := exec.Command(buildCairn(t), "init")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CAIRN_REPO=rel")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CAIRN_REPO=rel cairn init: %v: %s", err, out)
	}
	if res := runCairn(t, nil, "--repo", filepath.Join(dir, "rel"), "points"); res.code != 0 {
		t.Fatalf("points of the relative repository: %s", res.stderr)
	}
}

// TestInitFailedLeavesNothing: an init that fails on a full filesystem
// takes back what it made, so that init in the same place works once
// there is room (it used to be refused as "directory is not empty").
func TestInitFailedLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", mnt).CombinedOutput(); err != nil {
		testutil.Missing(t, fmt.Sprintf("a tmpfs mount: %v: %s", err, out))
	}
	defer exec.Command("umount", mnt).Run()
	for _, pre := range []bool{false, true} { // new directory, existing empty one
		repo := filepath.Join(mnt, "repo")
		if pre {
			if err := os.Mkdir(repo, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		res := runCairn(t, nil, "--repo", repo, "init")
		requireOneLineError(t, res, "space")
		entries, err := os.ReadDir(repo)
		switch {
		case !pre && !os.IsNotExist(err):
			t.Errorf("failed init left the directory it made (%v, %d entries)", err, len(entries))
		case pre && (err != nil || len(entries) != 0):
			t.Errorf("failed init left %d entries in the directory (%v)", len(entries), err)
		}
		if out, err := exec.Command("mount", "-o", "remount,size=100m", mnt).CombinedOutput(); err != nil {
			t.Fatalf("remount: %v: %s", err, out)
		}
		if res := runCairn(t, nil, "--repo", repo, "init"); res.code != 0 {
			t.Fatalf("init once there is room: %s", res.stderr)
		}
		os.RemoveAll(repo)
		if out, err := exec.Command("mount", "-o", "remount,size=300k", mnt).CombinedOutput(); err != nil {
			t.Fatalf("remount: %v: %s", err, out)
		}
	}
}

// TestOpenNewerFormat: a repository of a newer format says that a newer
// cairn made it and what to do; a format no cairn wrote is not a repository.
func TestOpenNewerFormat(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	if res := runCairn(t, nil, "--repo", repo, "init"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	cfg := filepath.Join(repo, "cairn.json")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	newer := strconv.Itoa(blockmap.FormatVersion + 1)
	for format, want := range map[string]string{newer: "written by a newer cairn", "0": "not a cairn repository"} {
		if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), `"format": 1`, `"format": `+format, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		requireOneLineError(t, runCairn(t, nil, "--repo", repo, "points"), want)
	}
}

// TestOpenOtherUsersRepository: a user who may not read the repository
// is told whose it is and as whom to run cairn.
func TestOpenOtherUsersRepository(t *testing.T) {
	testutil.RequireRoot(t)
	dir, bin := worldReadableCairn(t, "cairn-otheruser-")
	repo := filepath.Join(dir, "repo")
	if res := runCairn(t, nil, "--repo", repo, "init"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	cmd := exec.Command(bin, "--repo", repo, "points")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("points as uid 65534 succeeded: %s", out)
	}
	msg := strings.TrimSpace(string(out))
	for _, want := range []string{"permission denied", "belongs to uid 0", "mode 0700", "cairn runs as uid 65534", "run cairn as root"} {
		if !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
			t.Errorf("error %q: want one line containing %q", msg, want)
		}
	}
}

// TestRepositoryCopy follows docs/repository.md, "Moving or copying a
// repository": a repository copied with cp -a, rsync -aHS and tar
// --sparse to another path works there (verify clean, the same points and
// bytes), its delta images stay sparse, and the reserve a sparse copy
// left as a hole is allocated again by the first writer (a prune). A copy
// by rsync without -S is sound, and verify names the command that digs
// its filled holes out again.
func TestRepositoryCopy(t *testing.T) {
	testutil.RequireTools(t, "rsync", "tar", "cp")
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig")
	mustCairn(t, "--repo", orig, "init")
	img := filepath.Join(dir, "disk.img")
	makeImage(t, img, 64<<20)
	writeRandom(t, img, 1<<20, 3<<20, 1)
	writeRandom(t, img, 40<<20, 2<<20, 2)
	mustCairn(t, "--repo", orig, "import", "--vm", "web01", "--disk", "sda", "--time", "2026-01-01T00:00:00Z", img)
	writeRandom(t, img, 50<<20, 1<<20, 3)
	mustCairn(t, "--repo", orig, "import", "--vm", "web01", "--disk", "sda", "--time", "2026-01-02T00:00:00Z", img)
	want := exportSHA(t, orig, "web01", "latest", "sda")
	imagesHeld := dirAllocated(t, filepath.Join(orig, "images"))

	copies := map[string]string{
		"cp":         "cp -a ORIG NEW",
		"rsync":      "rsync -aHS ORIG/ NEW/",
		"rsync-no-S": "rsync -aH ORIG/ NEW/",
		"tar":        "mkdir NEW && tar -C ORIG --sparse -cf - . | tar -C NEW -xpf -",
	}
	for name, recipe := range copies {
		t.Run(name, func(t *testing.T) {
			nw := filepath.Join(dir, "new-"+name, "cairn")
			if err := os.MkdirAll(filepath.Dir(nw), 0o700); err != nil {
				t.Fatal(err)
			}
			sh := strings.NewReplacer("ORIG", orig, "NEW", nw).Replace(recipe)
			if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", sh, err, out)
			}
			res := runCairn(t, nil, "--repo", nw, "verify")
			if res.code != 0 || !strings.Contains(res.stdout, "0 bad, 0 other problems") {
				t.Fatalf("verify of the %s copy: exit %d: %s%s", name, res.code, res.stdout, res.stderr)
			}
			if name == "rsync-no-S" {
				// The holes became zeros: verify says so and how to dig them out.
				_, fix, ok := strings.Cut(res.stderr, "their holes were filled")
				_, fix, ok2 := strings.Cut(fix, "with: ")
				if !ok || !ok2 {
					t.Fatalf("verify of a copy without holes does not say so: %s", res.stderr)
				}
				fix = strings.TrimSpace(fix)
				if out, err := exec.Command("sh", "-c", fix).CombinedOutput(); err != nil {
					t.Fatalf("the advised %s: %v: %s", fix, err, out)
				}
				res = runCairn(t, nil, "--repo", nw, "verify")
				if res.code != 0 || !strings.Contains(res.stdout, "0 bad, 0 other problems") || strings.Contains(res.stderr, "NOTE") {
					t.Fatalf("verify after the advised fix: exit %d: %s%s", res.code, res.stdout, res.stderr)
				}
			} else if strings.Contains(res.stderr, "NOTE") {
				t.Fatalf("verify of the %s copy: %s", name, res.stderr)
			}
			if got := len(listPoints(t, nw, "web01")); got != 2 {
				t.Fatalf("the %s copy has %d points, want 2", name, got)
			}
			if got := exportSHA(t, nw, "web01", "latest", "sda"); got != want {
				t.Fatalf("the %s copy exports other bytes", name)
			}
			if held := dirAllocated(t, filepath.Join(nw, "images")); held > imagesHeld+imagesHeld/8 {
				t.Fatalf("the %s copy's images hold %d bytes, the original's %d: holes were filled", name, held, imagesHeld)
			}
			mustCairn(t, "--repo", nw, "prune", "--keep-last", "1")
			fi, err := os.Stat(filepath.Join(nw, "reserve"))
			if err != nil {
				t.Fatal(err)
			}
			if held := fi.Sys().(*syscall.Stat_t).Blocks * 512; held < fi.Size() {
				t.Fatalf("the %s copy's reserve holds %d of its %d bytes after a prune", name, held, fi.Size())
			}
			if got := exportSHA(t, nw, "web01", "latest", "sda"); got != want {
				t.Fatalf("the %s copy exports other bytes after the prune", name)
			}
		})
	}
}

// TestVerifyJSONAndPointFlag: verify --json of a clean repository gives
// empty lists (not null) for bad blocks, problems and loose modes;
// --point without --vm says to add --vm.
func TestVerifyJSONAndPointFlag(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(t.TempDir(), "d.img")
	makeImage(t, img, 1<<20)
	writeRandom(t, img, 0, 128<<10, 4)
	mustCairn(t, "--repo", repo, "import", "--vm", "web01", "--disk", "sda", img)
	out := mustCairn(t, "--repo", repo, "verify", "--json")
	var v struct {
		Report struct {
			Bad []any `json:"bad"`
		} `json:"report"`
		Problems   []string `json:"problems"`
		LooseModes []string `json:"loose_modes"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify --json: %v: %s", err, out)
	}
	if v.Report.Bad == nil || v.Problems == nil || v.LooseModes == nil {
		t.Fatalf("verify --json of a clean repository has null lists:\n%s", out)
	}
	requireOneLineError(t, runCairn(t, nil, "--repo", repo, "verify", "--point", "latest"), "--point latest needs --vm NAME")
}

// jsonKeys adds every object key under v to keys.
func jsonKeys(v any, keys map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			keys[k] = true
			jsonKeys(e, keys)
		}
	case []any:
		for _, e := range x {
			jsonKeys(e, keys)
		}
	}
}

// TestPointsJSONDocumented: every field `cairn points --json` prints is
// named in docs/repository.md ("Listing points"), the meta objects aside;
// an empty repository lists [] and says how to make a first point.
func TestPointsJSONDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "repository.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Listing points")
	if !ok {
		t.Fatal(`docs/repository.md has no "## Listing points" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	repo := filepath.Join(t.TempDir(), "repo")
	mustCairn(t, "--repo", repo, "init")
	empty := mustCairn(t, "--repo", repo, "points")
	if !strings.Contains(empty, "no recovery points yet") {
		t.Errorf("points of an empty repository:\n%s\nwant it to say there are none yet", empty)
	}
	if out := mustCairn(t, "--repo", repo, "points", "--json"); !strings.Contains(out, `"vms": []`) {
		t.Errorf("points --json of an empty repository:\n%s", out)
	}
	img := filepath.Join(t.TempDir(), "d.img")
	makeImage(t, img, 1<<20)
	writeRandom(t, img, 0, 128<<10, 5)
	mustCairn(t, "--repo", repo, "import", "--vm", "web01", "--disk", "sda", img)
	mustCairn(t, "--repo", repo, "import", "--vm", "web01", "--disk", "sda", img)
	// A boot check's verdict beside the first point (as verify-boot and
	// serve's boot checks keep it); the second point has none.
	var pl struct {
		VMs []struct{ Points []struct{ ID string } }
	}
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repo, "points", "--json")), &pl); err != nil || len(pl.VMs) != 1 || len(pl.VMs[0].Points) != 2 {
		t.Fatalf("points --json: %+v %v", pl, err)
	}
	finished := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	if err := boot.SaveResult(repo, "web01", pl.VMs[0].Points[0].ID, boot.Result{Verdict: "booted", Reason: "login prompt on the console", Finished: finished}, "", ""); err != nil {
		t.Fatal(err)
	}
	var typed struct {
		VMs []struct {
			Points []struct {
				Boot *struct {
					Verdict, Reason string
					Finished        time.Time
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repo, "points", "--json")), &typed); err != nil {
		t.Fatal(err)
	}
	if b := typed.VMs[0].Points[0].Boot; b == nil || b.Verdict != "booted" || b.Reason != "login prompt on the console" || !b.Finished.Equal(finished) {
		t.Errorf("points --json: boot of the boot-checked point %+v, want its verdict, reason and time", b)
	}
	if b := typed.VMs[0].Points[1].Boot; b != nil {
		t.Errorf("points --json: boot of a point never boot-checked %+v, want none", b)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(mustCairn(t, "--repo", repo, "points", "--json")), &v); err != nil {
		t.Fatal(err)
	}
	// The meta objects are the writer's own words; their keys are not fields.
	for _, vm := range v["vms"].([]any) {
		for _, p := range vm.(map[string]any)["points"].([]any) {
			pm := p.(map[string]any)
			if _, ok := pm["meta"]; ok {
				pm["meta"] = "x"
			}
			for _, d := range pm["disks"].([]any) {
				d.(map[string]any)["meta"] = "x"
			}
		}
	}
	keys := map[string]bool{}
	jsonKeys(v, keys)
	for k := range keys {
		if !strings.Contains(section, "`"+k+"`") {
			t.Errorf("points --json prints %q, which docs/repository.md (Listing points) does not name", k)
		}
	}
}

// TestRootWroteIntoUsersRepository: a repository of an unprivileged user
// that a cairn run as root wrote into (root-owned index tables) is not
// "damaged" to its owner (that advice said to restore from an offsite
// copy): the error names the foreign file and the chown that fixes it,
// and after that chown the owner reads the repository again.
func TestRootWroteIntoUsersRepository(t *testing.T) {
	testutil.RequireRoot(t)
	dir, bin := worldReadableCairn(t, "cairn-rootwrote-")
	asNobody := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	repo := filepath.Join(dir, "repo")
	if err := os.Mkdir(repo, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(repo, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if out, err := asNobody("--repo", repo, "init"); err != nil {
		t.Fatalf("init as 65534: %v: %s", err, out)
	}
	img := filepath.Join(dir, "d.img")
	makeImage(t, img, 1<<20)
	writeRandom(t, img, 0, 128<<10, 6)
	mustCairn(t, "--repo", repo, "import", "--vm", "web01", "--disk", "sda", img) // as root
	out, err := asNobody("--repo", repo, "points")
	if err == nil {
		t.Skipf("root's import left nothing the owner cannot read: %s", out)
	}
	for _, want := range []string{"permission denied", "belongs to uid 0", "chown -R 65534:65534 " + repo} {
		if !strings.Contains(out, want) {
			t.Errorf("error %q: want it to contain %q", out, want)
		}
	}
	if strings.Contains(out, "damaged") || strings.Contains(out, "offsite") {
		t.Errorf("error %q: a permission problem is reported as damage", out)
	}
	if o, err := exec.Command("chown", "-R", "65534:65534", repo).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, o)
	}
	if out, err := asNobody("--repo", repo, "points"); err != nil || !strings.Contains(out, "web01") {
		t.Fatalf("points after the advised chown: %v: %s", err, out)
	}
}

// TestPruneJSONDocumented: every top-level field of prune --json and
// forget --json is named in docs/repository.md (Prune and forget), and
// the bytes forget reports released are what du sees go.
func TestPruneJSONDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "repository.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Prune and forget")
	if !ok {
		t.Fatal(`docs/repository.md has no "## Prune and forget" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	repo := filepath.Join(t.TempDir(), "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(t.TempDir(), "d.img")
	makeImage(t, img, 8<<20)
	for i := range 3 {
		writeRandom(t, img, 0, 4<<20, uint64(10+i)) // each point replaces the last one's data
		mustCairn(t, "--repo", repo, "import", "--vm", "web01", "--disk", "sda", "--time", fmt.Sprintf("2026-01-0%dT00:00:00Z", i+1), img)
	}
	check := func(out string) map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for k := range v {
			if !strings.Contains(section, "`"+k+"`") {
				t.Errorf("prune/forget --json prints %q, which docs/repository.md (Prune and forget) does not name", k)
			}
		}
		return v
	}
	check(mustCairn(t, "--repo", repo, "prune", "--keep-last", "2", "--dry-run", "--json"))
	if v := check(mustCairn(t, "--repo", repo, "prune", "--keep-last", "3", "--json")); v["deleted"] == nil {
		t.Errorf("prune --json that deletes nothing: deleted is null, want []")
	}
	before := dirAllocated(t, filepath.Join(repo, "images"))
	v := check(mustCairn(t, "--repo", repo, "forget", "--vm", "web01", "--point", "2026-01-01T00-00-00Z", "--json"))
	after := dirAllocated(t, filepath.Join(repo, "images"))
	if got := int64(v["bytes_released"].(float64)); got != before-after || got < 4<<20 {
		t.Errorf("forget reports %d bytes released, du of images/ went from %d to %d", got, before, after)
	}
}

// TestPruneBucketsCountPointDays: --keep-daily N keeps the newest point
// of the N most recent days that have points, however long ago, as the
// help now says (it said "of the last N days", read as counted back from
// now, which would keep only the newest point of an old VM).
func TestPruneBucketsCountPointDays(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(t.TempDir(), "d.img")
	makeImage(t, img, 1<<20)
	for i, when := range []string{"2025-01-01T01:00:00Z", "2025-02-01T01:00:00Z", "2025-03-01T01:00:00Z"} {
		writeRandom(t, img, 0, 64<<10, uint64(20+i))
		mustCairn(t, "--repo", repo, "import", "--vm", "old", "--disk", "sda", "--time", when, img)
	}
	out := mustCairn(t, "--repo", repo, "prune", "--keep-daily", "2", "--dry-run")
	if !strings.Contains(out, "would delete old 2025-01-01T01-00-00Z") || !strings.Contains(out, "1 point would be deleted, 2 kept") {
		t.Fatalf("prune --keep-daily 2 of points a month apart:\n%s", out)
	}
	if help := mustCairn(t, "prune", "--help"); !strings.Contains(help, "N most recent days that have points") {
		t.Fatalf("prune --help does not say how days are counted:\n%s", help)
	}
}

// worldReadableCairn makes a directory under /tmp (which another user can
// reach, unlike t.TempDir's parents) holding a copy of the cairn binary,
// both mode 0755, for tests that run cairn as another user; it is removed
// at the end of the test.
func worldReadableCairn(t *testing.T, prefix string) (dir, bin string) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "cairn")
	copyFile(t, buildCairn(t), bin)
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}
