package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// historyFixture is a VM "u" with five points of two disks, imported
// with `cairn import`: sda is an ext4 filesystem without a partition
// table that changes between points, sdb an MBR disk whose p1 holds an
// ext4 filesystem that never changes, sdc a FAT filesystem without a
// partition table (names in mixed case) that never changes.
//
//	P1 /etc/app.conf = A (100 bytes, mtime M), /docs/old/report.txt
//	P2 P1's image with A's bytes overwritten in place by B: same size,
//	   same mtime, same inode, other bytes
//	P3 /etc/app.conf deleted, /docs/old renamed /docs/new
//	P4 /etc/app.conf back with other content C and mtime
//	P5 P4's image again: nothing changed
//	P6 (broken only) P4's image with its superblock wiped
//	P7 (broken only) P6's image again
type historyFixture struct {
	repo    string
	ids     []string // P1..P5
	a, b, c []byte
	mtime   time.Time // of A and B
	mtimeC  time.Time
}

func pad(s string, n int) []byte { return []byte(s + strings.Repeat(".", n-len(s))) }

func buildHistoryFixture(t *testing.T, broken bool) historyFixture {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.vfat", "mmd", "mcopy")
	dir := t.TempDir()
	f := historyFixture{
		repo:   filepath.Join(dir, "repo"),
		a:      pad("app.conf version A: listen 8080", 100),
		b:      pad("app.conf version B: listen 9090", 100),
		c:      pad("app.conf version C: listen 7070, workers 4", 180),
		mtime:  time.Date(2026, 10, 20, 8, 30, 0, 0, time.UTC),
		mtimeC: time.Date(2026, 10, 25, 9, 0, 0, 0, time.UTC),
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(root, rel string, data []byte, mode os.FileMode, mtime time.Time) {
		t.Helper()
		p := filepath.Join(root, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, mode))
		must(os.Chmod(p, mode))
		must(os.Chtimes(p, mtime, mtime))
	}
	old := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	src := filepath.Join(dir, "src")
	write(src, "etc/app.conf", f.a, 0o640, f.mtime)
	write(src, "docs/old/report.txt", []byte("quarterly report\n"), 0o644, old)
	write(src, "notes.txt", []byte("notes\n"), 0o644, old)
	mkfs := func(name string) string {
		img := filepath.Join(dir, name)
		sh(t, "mkfs.ext4", "-q", "-F", "-O", "^inline_data", "-d", src, img, "16M")
		return img
	}
	img1 := mkfs("p1.img")
	// P2: the same filesystem with A's bytes replaced in place.
	raw, err := os.ReadFile(img1)
	must(err)
	if n := bytes.Count(raw, f.a); n != 1 {
		t.Fatalf("content A found %d times in the image, want 1", n)
	}
	img2 := filepath.Join(dir, "p2.img")
	must(os.WriteFile(img2, bytes.Replace(raw, f.a, f.b, 1), 0o644))
	must(os.Remove(filepath.Join(src, "etc/app.conf")))
	must(os.Rename(filepath.Join(src, "docs/old"), filepath.Join(src, "docs/new")))
	img3 := mkfs("p3.img")
	write(src, "etc/app.conf", f.c, 0o644, f.mtimeC)
	img4 := mkfs("p4.img")

	// sdb: an MBR disk whose p1 (1 MiB in) holds another ext4.
	data := filepath.Join(dir, "data")
	write(data, "archive/report.txt", []byte("last year's report\n"), 0o600, old)
	fsImg := filepath.Join(dir, "data.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", data, fsImg, "8M")
	fsBytes, err := os.ReadFile(fsImg)
	must(err)
	disk := make([]byte, 10<<20)
	copy(disk[1<<20:], fsBytes)
	e := disk[446:462]
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], uint32(len(fsBytes)/512))
	disk[510], disk[511] = 0x55, 0xaa
	sdb := filepath.Join(dir, "sdb.img")
	must(os.WriteFile(sdb, disk, 0o644))

	imgs := []string{img1, img2, img3, img4, img4}
	if broken {
		raw, err := os.ReadFile(img4)
		must(err)
		clear(raw[1024:2048])
		img6 := filepath.Join(dir, "p6.img")
		must(os.WriteFile(img6, raw, 0o644))
		imgs = append(imgs, img6, img6)
	}
	// sdc: FAT, /Docs/Q3 Report.XLSX.
	sdc := filepath.Join(dir, "sdc.img")
	sh(t, "mkfs.vfat", "-C", sdc, "4096")
	xlsx := filepath.Join(dir, "Q3 Report.XLSX")
	write(dir, "Q3 Report.XLSX", []byte("spreadsheet\n"), 0o644, old)
	sh(t, "mmd", "-i", sdc, "::/Docs")
	sh(t, "mcopy", "-m", "-i", sdc, xlsx, "::/Docs/")

	mustCairn(t, "--repo", f.repo, "init")
	for i, img := range imgs {
		at := time.Date(2026, 11, 1+i, 1, 0, 0, 0, time.UTC)
		mustCairn(t, "--repo", f.repo, "import", "--vm", "u", "--disk", "sda", "--disk", "sdb", "--disk", "sdc", "--time", at.Format(time.RFC3339), img, sdb, sdc)
		f.ids = append(f.ids, at.Format("2006-01-02T15-04-05Z"))
	}
	return f
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestHistoryCLI: `cairn history` tells the versions of a file apart by
// content (same size and mtime, other bytes: two versions), shows the
// gap where it was deleted, prints a restore-file command that brings
// each version back, and reads an unchanged point not at all.
func TestHistoryCLI(t *testing.T) {
	f := buildHistoryFixture(t, true)
	P := f.ids
	var h struct {
		Path        string
		Order       string
		Filesystems []struct {
			Filesystem, Disk, Part string
			Versions               int
			Runs                   []struct {
				Points      []string
				First, Last string
				State       string
				Version     int
				Type, Mode  string
				UID         *uint32
				Size        int64
				Mtime       time.Time
				SHA256      string
				Restore     string
				Error       string
			}
		}
		Errors []struct{ Point, Filesystem, Error string }
		Stats  struct {
			Points          int
			PointsRead      int `json:"points_read"`
			PointsUnchanged int `json:"points_unchanged"`
		}
	}
	out := mustCairn(t, "--repo", f.repo, "history", "--vm", "u", "--json", "--oldest-first", "/etc/app.conf")
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(h.Filesystems) != 1 || h.Filesystems[0].Filesystem != "sda/whole" || h.Filesystems[0].Versions != 3 {
		t.Fatalf("history: want one filesystem sda/whole with 3 versions:\n%s", out)
	}
	// P6's sda holds no filesystem any more: unreadable, never "absent";
	// P7 is P6 again, answered without a read, with its own error.
	if len(h.Errors) != 2 || h.Errors[0].Point != P[5] || h.Errors[1].Point != P[6] || h.Errors[1].Filesystem != "sda/whole" ||
		!strings.Contains(h.Errors[1].Error, "no filesystem cairn recognises") {
		t.Errorf("history errors: want P6's and P7's sda/whole unreadable:\n%s", out)
	}
	type run struct {
		points  []string
		state   string
		version int
		size    int64
		mode    string
		mtime   time.Time
		sha     string
	}
	want := []run{
		{P[0:1], "version", 1, 100, "-rw-r-----", f.mtime, sha(f.a)},
		{P[1:2], "version", 2, 100, "-rw-r-----", f.mtime, sha(f.b)},
		{P[2:3], "absent", 0, 0, "", time.Time{}, ""},
		{P[3:5], "version", 3, 180, "-rw-r--r--", f.mtimeC, sha(f.c)},
		{P[5:7], "unreadable", 0, 0, "", time.Time{}, ""},
	}
	var got []run
	for _, r := range h.Filesystems[0].Runs {
		got = append(got, run{r.Points, r.State, r.Version, r.Size, r.Mode, r.Mtime, r.SHA256})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("history runs:\n got %+v\nwant %+v", got, want)
	}
	if s := h.Stats; s.Points != 7 || s.PointsRead != 5 || s.PointsUnchanged != 2 {
		t.Errorf("stats %+v: want 7 points, 5 read, 2 unchanged (P5 is P4 again, P7 is P6)", s)
	}

	// The text, newest first: one row per run, then how to restore each
	// version, from its newest point.
	res := runCairn(t, nil, "--repo", f.repo, "history", "--vm", "u", "/etc/app.conf")
	text := res.stdout
	if res.code != 0 || !strings.Contains(res.stderr, "point "+P[5]+": filesystem sda/whole: cannot be read: This volume holds no filesystem cairn recognises") ||
		!strings.Contains(res.stderr, "point "+P[6]+": filesystem sda/whole: cannot be read:") {
		t.Errorf("history: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		rows = append(rows, strings.Fields(l))
	}
	wantRows := [][]string{
		{"sda/whole", "/etc/app.conf:", "3", "version(s)", "in", "4", "of", "7", "points,", "newest", "first"},
		{"POINTS", "VERSION", "TYPE", "MODE", "OWNER", "SIZE", "MTIME", "SHA256"},
		{P[6] + ".." + P[5], "(2)", "unreadable"},
		{P[4] + ".." + P[3], "(2)", "v3", "file", "-rw-r--r--", "0:0", "180", "2026-10-25", "09:00:00", sha(f.c)[:16]},
		{P[2], "absent"},
		{P[1], "v2", "file", "-rw-r-----", "0:0", "100", "2026-10-20", "08:30:00", sha(f.b)[:16]},
		{P[0], "v1", "file", "-rw-r-----", "0:0", "100", "2026-10-20", "08:30:00", sha(f.a)[:16]},
		{"restore", "a", "version", "(DEST:", "where", "to", "put", "it):"},
		{"v3:", "cairn", "--repo", f.repo, "restore-file", "--vm", "u", "--point", P[4], "--disk", "sda", "--part", "whole", "/etc/app.conf", "DEST"},
		{"v2:", "cairn", "--repo", f.repo, "restore-file", "--vm", "u", "--point", P[1], "--disk", "sda", "--part", "whole", "/etc/app.conf", "DEST"},
		{"v1:", "cairn", "--repo", f.repo, "restore-file", "--vm", "u", "--point", P[0], "--disk", "sda", "--part", "whole", "/etc/app.conf", "DEST"},
	}
	if !reflect.DeepEqual(rows, wantRows) {
		t.Errorf("history text:\n%s\nwant rows %q", text, wantRows)
	}
	// Each printed command brings back that version's bytes.
	for v, content := range map[string][]byte{"v1:": f.a, "v2:": f.b, "v3:": f.c} {
		for _, r := range rows {
			if len(r) == 0 || r[0] != v {
				continue
			}
			dest := filepath.Join(t.TempDir(), "app.conf")
			args := append(append([]string(nil), r[2:len(r)-1]...), dest)
			mustCairn(t, args...)
			if b, err := os.ReadFile(dest); err != nil || !bytes.Equal(b, content) {
				t.Errorf("%s restored %q (%v), want %q", strings.Join(args, " "), b, err, content)
			}
		}
	}

	// A path in no point: an error naming it and where to look.
	res = runCairn(t, nil, "--repo", f.repo, "history", "--vm", "u", "/etc/nope.conf")
	if res.code == 0 || !strings.Contains(res.stderr, "/etc/nope.conf: path not found in any recovery point (7 points; looked in sda/whole, sdb/p1, sdc/whole)") ||
		!strings.Contains(res.stderr, "cairn search --vm u --all-points") {
		t.Errorf("history of a missing path: exit %d\n%s", res.code, res.stderr)
	}
	// A directory renamed away: present, then absent from P3 on.
	out = mustCairn(t, "--repo", f.repo, "history", "--vm", "u", "--json", "--disk", "sda", "/docs/old")
	h.Filesystems = nil
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatal(err)
	}
	if fs := h.Filesystems; len(fs) != 1 || len(fs[0].Runs) != 3 || fs[0].Runs[0].State != "unreadable" || !reflect.DeepEqual(fs[0].Runs[0].Points, P[5:7]) ||
		fs[0].Runs[1].State != "absent" || !reflect.DeepEqual(fs[0].Runs[1].Points, P[2:5]) ||
		fs[0].Runs[2].Type != "dir" || !reflect.DeepEqual(fs[0].Runs[2].Points, P[0:2]) {
		t.Errorf("history /docs/old:\n%s", out)
	}
	// search reports the filesystem that vanished, in both points.
	out = mustCairn(t, "--repo", f.repo, "search", "--vm", "u", "--all-points", "--json", "app.conf")
	var sr struct {
		Hits   []struct{ Points []string }
		Errors []struct{ Point, Filesystem string }
		Stats  struct {
			Read int `json:"points_read"`
		}
	}
	if err := json.Unmarshal([]byte(out), &sr); err != nil {
		t.Fatal(err)
	}
	if len(sr.Hits) != 2 || len(sr.Errors) != 2 || sr.Errors[0].Point != P[5] || sr.Errors[1].Point != P[6] || sr.Errors[1].Filesystem != "sda/whole" || sr.Stats.Read != 5 {
		t.Errorf("search app.conf over the broken points:\n%s", out)
	}
	res = runCairn(t, nil, "--repo", f.repo, "history", "--vm", "nosuchvm", "/etc/app.conf")
	if res.code == 0 || !strings.Contains(res.stderr, `"nosuchvm"`) {
		t.Errorf("history of an unknown VM: exit %d\n%s", res.code, res.stderr)
	}
}

// TestSearchCLI: `cairn search` finds names in every filesystem of every
// disk, and with --all-points prints an entry unchanged across points
// once with the range of points (a renamed directory: the old path for
// the points before, the new one after).
func TestSearchCLI(t *testing.T) {
	f := buildHistoryFixture(t, false)
	P := f.ids
	type hit struct {
		Filesystem string
		Path       string
		Points     []string
		Type       string
		Size       int64
	}
	search := func(args ...string) ([]hit, string) {
		t.Helper()
		out := mustCairn(t, append([]string{"--repo", f.repo, "search", "--vm", "u", "--json"}, args...)...)
		var r struct {
			Hits   []hit
			Errors []json.RawMessage
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(r.Errors) != 0 {
			t.Errorf("search %v: errors in\n%s", args, out)
		}
		return r.Hits, out
	}
	for _, tc := range []struct {
		args []string
		want []hit
	}{
		{[]string{"--all-points", "report*"}, []hit{
			{"sda/whole", "/docs/new/report.txt", P[2:5], "file", 17},
			{"sda/whole", "/docs/old/report.txt", P[0:2], "file", 17},
			{"sdb/p1", "/archive/report.txt", P[0:5], "file", 19},
		}},
		{[]string{"report*"}, []hit{ // the latest point
			{"sda/whole", "/docs/new/report.txt", P[4:5], "file", 17},
			{"sdb/p1", "/archive/report.txt", P[4:5], "file", 19},
		}},
		{[]string{"--point", P[0], "--path-prefix", "/docs", "*"}, []hit{
			{"sda/whole", "/docs/old", P[0:1], "dir", 1024},
			{"sda/whole", "/docs/old/report.txt", P[0:1], "file", 17},
			// FAT ignores case: /docs is its /Docs, shown as it is spelt.
			{"sdc/whole", "/Docs/Q3 Report.XLSX", P[0:1], "file", 12},
		}},
		// Search groups by metadata: B has A's size and mtime, so P1
		// and P2 are one line (history tells them apart by content).
		{[]string{"--all-points", "-i", "*.CONF"}, []hit{
			{"sda/whole", "/etc/app.conf", P[0:2], "file", 100},
			{"sda/whole", "/etc/app.conf", P[3:5], "file", 180},
		}},
		{[]string{"--all-points", "*.CONF"}, []hit{}},
		{[]string{"-i", "*.xlsx"}, []hit{
			{"sdc/whole", "/Docs/Q3 Report.XLSX", P[4:5], "file", 12},
		}},
		{[]string{"--all-points", "*.xlsx"}, []hit{}},
		{[]string{"--all-points", "--larger", "100", "*.conf"}, []hit{
			{"sda/whole", "/etc/app.conf", P[3:5], "file", 180},
		}},
		{[]string{"--all-points", "--volume", "lvm/vg/lv", "*"}, []hit{}},
		{[]string{"--all-points", "--disk", "sdb", "--path", "archive/*", "*"}, []hit{
			{"sdb/p1", "/archive/report.txt", P[0:5], "file", 19},
		}},
	} {
		got, out := search(tc.args...)
		if got == nil {
			got = []hit{}
		}
		// Directory sizes depend on mkfs: compare them only for files.
		for i := range got {
			if got[i].Type == "dir" && i < len(tc.want) && tc.want[i].Type == "dir" {
				got[i].Size = tc.want[i].Size
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("search %v:\n got %+v\nwant %+v\n%s", tc.args, got, tc.want, out)
		}
	}
	text := mustCairn(t, "--repo", f.repo, "search", "--vm", "u", "--all-points", "report*")
	for _, w := range []string{P[0] + ".." + P[1] + " (2)  sda/whole   file  17    2026-09-01 12:00:00  /docs/old/report.txt"} {
		if !strings.Contains(text, w) {
			t.Errorf("search text: no %q in\n%s", w, text)
		}
	}
	res := runCairn(t, nil, "--repo", f.repo, "search", "--vm", "u", "--point", P[0], "--all-points", "x")
	if res.code == 0 || !strings.Contains(res.stderr, "either --point or --all-points") {
		t.Errorf("search --point with --all-points: exit %d %s", res.code, res.stderr)
	}
}

// TestHistoryXFS: the same in-place rewrite (same size, mtime and inode,
// other bytes) seen through the XFS reader, and a point that is the one
// before it again answered without a read.
func TestHistoryXFS(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.xfs")
	dir := t.TempDir()
	a, b := pad("xfs app.conf version A", 120), pad("xfs app.conf version B", 120)
	conf := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(conf, a, 0o640); err != nil {
		t.Fatal(err)
	}
	proto := filepath.Join(dir, "proto")
	if err := os.WriteFile(proto, []byte("/dev/null\n0 0\nd--755 0 0\netc d--755 0 0\napp.conf ---640 0 0 "+conf+"\n$\n$\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img1 := filepath.Join(dir, "x1.img")
	f, err := os.Create(img1)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(32 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Below mkfs.xfs's 300 MB floor through the fstests escape.
	mkfs := exec.Command("mkfs.xfs", "-q", "-p", proto, img1)
	mkfs.Env = append(os.Environ(), "TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1")
	if out, err := mkfs.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(img1)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, a); n != 1 {
		t.Fatalf("content A found %d times in the image, want 1", n)
	}
	img2 := filepath.Join(dir, "x2.img")
	if err := os.WriteFile(img2, bytes.Replace(raw, a, b, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	var ids []string
	for i, img := range []string{img1, img2, img2} {
		at := time.Date(2026, 11, 1+i, 1, 0, 0, 0, time.UTC)
		mustCairn(t, "--repo", repo, "import", "--vm", "x", "--disk", "sda", "--time", at.Format(time.RFC3339), img)
		ids = append(ids, at.Format("2006-01-02T15-04-05Z"))
	}
	var h struct {
		Filesystems []struct {
			Filesystem string
			FSType     string `json:"fs_type"`
			Runs       []struct {
				Points  []string
				Version int
				SHA256  string
			}
		}
		Stats struct {
			Read      int `json:"points_read"`
			Unchanged int `json:"points_unchanged"`
		}
	}
	out := mustCairn(t, "--repo", repo, "history", "--vm", "x", "--oldest-first", "--json", "/etc/app.conf")
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Filesystems) != 1 || h.Filesystems[0].FSType != "xfs" || len(h.Filesystems[0].Runs) != 2 {
		t.Fatalf("history on XFS:\n%s", out)
	}
	r := h.Filesystems[0].Runs
	if !reflect.DeepEqual(r[0].Points, ids[0:1]) || r[0].Version != 1 || r[0].SHA256 != sha(a) ||
		!reflect.DeepEqual(r[1].Points, ids[1:3]) || r[1].Version != 2 || r[1].SHA256 != sha(b) ||
		h.Stats.Read != 2 || h.Stats.Unchanged != 1 {
		t.Errorf("history on XFS: want v1 in P1, v2 in P2..P3 (P3 not read):\n%s", out)
	}
}

// searchAcrossVolumes: search and history find a /boot file on the MD
// raid1 md/boot only (its members sda/p1 and sdb/p1 hold the same ext4
// at offset 0 and are not searched again) and a root file on the LV
// lvm/centos/root inside the other array. TestCentOSLayout calls it on
// its fixture.
func searchAcrossVolumes(t *testing.T, repoDir, point, srcBoot, srcRoot string) {
	firstFile := func(root string) string {
		t.Helper()
		var rel string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && rel == "" && d.Type().IsRegular() {
				rel, _ = filepath.Rel(root, p)
			}
			return nil
		})
		if rel == "" {
			t.Fatalf("no file under %s", root)
		}
		return rel
	}
	for _, src := range []string{srcBoot, srcRoot} {
		rel := firstFile(src)
		// The filesystems holding rel, as search sorts them.
		var want []string
		for _, fs := range []struct{ name, src string }{{"lvm/centos/root", srcRoot}, {"md/boot", srcBoot}} {
			if _, err := os.Lstat(filepath.Join(fs.src, rel)); err == nil {
				want = append(want, fs.name)
			}
		}
		out := mustCairn(t, "--repo", repoDir, "search", "--vm", "centos", "--point", point, "--json", "--path", rel, filepath.Base(rel))
		var r struct {
			Hits []struct {
				Filesystem, Volume, Path string
			}
			Errors []json.RawMessage
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range r.Hits {
			if h.Volume != h.Filesystem || h.Path != "/"+rel {
				t.Errorf("search %s: hit %+v", rel, h)
			}
			got = append(got, h.Filesystem)
		}
		if !reflect.DeepEqual(got, want) || len(r.Errors) != 0 {
			t.Errorf("search %s: hits on %v, want %v (no array member):\n%s", rel, got, want, out)
		}
		text := mustCairn(t, "--repo", repoDir, "history", "--vm", "centos", "/"+rel)
		for _, fs := range want {
			if !strings.Contains(text, fs+" /"+rel+": 1 version(s) in 1 of 1 points") || !strings.Contains(text, "--volume "+fs+" /"+rel+" DEST") {
				t.Errorf("history %s: no table of %s:\n%s", rel, fs, text)
			}
		}
		if strings.Contains(text, "sda/") || strings.Contains(text, "sdb/") {
			t.Errorf("history %s shows an array member:\n%s", rel, text)
		}
	}
}

// remoteFindMatchesLocal: search and history with --remote give what
// they give on the local point the remote holds a copy of (the restore
// commands with --remote). TestRemoteRestoreFile calls it on its
// replicated VM g (disk sda, ext4 in p1 made from src).
func remoteFindMatchesLocal(t *testing.T, repo, src string) {
	t.Helper()
	local := mustCairn(t, "--repo", repo, "search", "--vm", "g", "--all-points", "--json", "*")
	remote := mustCairn(t, "--repo", repo, "search", "--remote", "off", "--vm", "g", "--all-points", "--json", "*")
	if local != remote || strings.Count(local, `"path"`) < 100 {
		t.Errorf("search --remote differs from the local search:\n%.3000s\nlocal:\n%.3000s", remote, local)
	}
	var rel string
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err == nil && rel == "" && d.Type().IsRegular() {
			rel, _ = filepath.Rel(src, p)
		}
		return nil
	})
	local = mustCairn(t, "--repo", repo, "history", "--vm", "g", "--json", "/"+rel)
	remote = mustCairn(t, "--repo", repo, "history", "--remote", "off", "--vm", "g", "--json", "/"+rel)
	if !strings.Contains(remote, "restore-file --remote off --vm g") || strings.Replace(remote, "restore-file --remote off", "restore-file", -1) != local {
		t.Errorf("history --remote:\n%s\nlocal:\n%s", remote, local)
	}
}

// TestHistoryNTFS: a Windows path as an administrator copies it (drive
// letter, backslashes, other case) finds the file on NTFS, and a file
// overwritten by ntfscp (same size; ntfscp leaves the mtime) is two
// versions, each restored as it was.
func TestHistoryNTFS(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkntfs", "ntfscp")
	dir := t.TempDir()
	img := filepath.Join(dir, "ntfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(16 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sh(t, "mkntfs", "-F", "-Q", "-q", img)
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	contents := [][]byte{[]byte("quarter three v1\n"), []byte("quarter three v2\n")}
	var ids []string
	for i, c := range contents {
		src := filepath.Join(dir, fmt.Sprint("v", i))
		if err := os.WriteFile(src, c, 0o644); err != nil {
			t.Fatal(err)
		}
		sh(t, "ntfscp", "-f", img, src, "Q3 Report.XLSX")
		at := time.Date(2026, 11, 1+i, 1, 0, 0, 0, time.UTC)
		mustCairn(t, "--repo", repo, "import", "--vm", "w", "--disk", "sda", "--time", at.Format(time.RFC3339), img)
		ids = append(ids, at.Format("2006-01-02T15-04-05Z"))
	}
	var h struct {
		Filesystems []struct {
			FSType string `json:"fs_type"`
			Runs   []struct {
				Points  []string
				Version int
				UID     *uint32
				SHA256  string
				Restore string
			}
		}
	}
	out := mustCairn(t, "--repo", repo, "history", "--vm", "w", "--oldest-first", "--json", `C:\q3 report.xlsx`)
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Filesystems) != 1 || h.Filesystems[0].FSType != "ntfs" || len(h.Filesystems[0].Runs) != 2 {
		t.Fatalf("history on NTFS:\n%s", out)
	}
	for i, r := range h.Filesystems[0].Runs {
		if !reflect.DeepEqual(r.Points, ids[i:i+1]) || r.Version != i+1 || r.SHA256 != sha(contents[i]) || r.UID != nil {
			t.Errorf("run %d: %+v, want v%d in %s with the SHA-256 of %q and no owner", i, r, i+1, ids[i], contents[i])
		}
		args := strings.Fields(strings.Replace(r.Restore, "'/q3 report.xlsx'", "/q3_report.xlsx", 1))
		if len(args) < 3 || args[len(args)-1] != "DEST" {
			t.Fatalf("restore line %q", r.Restore)
		}
		dest := filepath.Join(t.TempDir(), "r.xlsx")
		args[len(args)-2] = "/q3 report.xlsx"
		args[len(args)-1] = dest
		mustCairn(t, args[1:]...)
		if b, err := os.ReadFile(dest); err != nil || !bytes.Equal(b, contents[i]) {
			t.Errorf("%s restored %q (%v), want %q", r.Restore, b, err, contents[i])
		}
	}
}
