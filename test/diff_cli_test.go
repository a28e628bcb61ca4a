package test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// diffTree writes the first generation of the diff fixture's tree under
// root: one entry for each change kind diffChanges makes, an unchanged
// large file, and a directory that stays unchanged while a file deep
// below it changes.
func diffTree(t testing.TB, root string) {
	t.Helper()
	old := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	rnd := rand.New(rand.NewPCG(7, 8))
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(rnd.Uint32())
	}
	text := func(s string) []byte { return []byte(strings.Repeat(s+"\n", 300)) }
	files := map[string][]byte{
		"same.txt": text("same size, same mtime, other bytes"), "grow.txt": text("grows"),
		"del.txt": text("to be deleted"), "deldir/x": text("x"), "chmod.txt": text("chmod"),
		"chown.txt": text("chown"), "touch.txt": text("touch"), "xattr.txt": text("xattr"),
		"acl.txt": text("acl"), "f2d": text("file to dir"), "hardsrc": text("hard link source"),
		"keep/deep/child.txt": text("child changes, parents do not"), "keep/other.txt": text("unchanged"),
		"data/big.bin": big, "ransom/doc.txt": text("a plain document about quarterly numbers"),
		"unchanged.txt": text("nothing happens to me"), "moved.txt": text("moved to other blocks, same bytes"),
	}
	for name, b := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"link", "same.txt"}, {"link2", "grow.txt"}} {
		if err := os.Symlink(l[1], filepath.Join(root, l[0])); err != nil {
			t.Fatal(err)
		}
	}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			lchtimes(t, p, old)
		}
		return nil
	})
}

// diffChanges makes every change kind under root, a kernel mount of the
// first generation.
func diffChanges(t testing.TB, root string, acl bool) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(n string) string { return filepath.Join(root, n) }
	must(os.WriteFile(p("added.txt"), []byte("new file\n"), 0o644))
	must(os.MkdirAll(p("newdir/sub"), 0o755))
	must(os.WriteFile(p("newdir/sub/inner.txt"), []byte("inner\n"), 0o600))
	must(os.Remove(p("del.txt")))
	must(os.RemoveAll(p("deldir")))
	// Same size, same mtime, other bytes, written in place.
	for _, n := range []string{"same.txt", "keep/deep/child.txt"} {
		st, err := os.Stat(p(n))
		must(err)
		b, err := os.ReadFile(p(n))
		must(err)
		f, err := os.OpenFile(p(n), os.O_WRONLY, 0)
		must(err)
		_, err = f.WriteAt(bytes.ToUpper(b[:20]), 0)
		must(err)
		must(f.Close())
		must(os.Chtimes(p(n), st.ModTime(), st.ModTime()))
	}
	f, err := os.OpenFile(p("grow.txt"), os.O_APPEND|os.O_WRONLY, 0)
	must(err)
	f.WriteString("more\n")
	f.Close()
	must(os.Chmod(p("chmod.txt"), 0o600))
	must(os.Lchown(p("chown.txt"), 1000, 1000))
	later := time.Date(2026, 10, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(p("touch.txt"), later, later))
	sh(t, "setfattr", "-n", "user.color", "-v", "red", p("xattr.txt"))
	if acl {
		sh(t, "setfacl", "-m", "u:1234:rw", p("acl.txt"))
	}
	must(os.Remove(p("link")))
	must(os.Symlink("grow.txt", p("link")))
	lchtimes(t, p("link"), later) // rsync compares a link's time in whole seconds
	must(os.Remove(p("f2d")))
	must(os.Mkdir(p("f2d"), 0o755))
	must(os.WriteFile(p("f2d/child"), []byte("child\n"), 0o644))
	must(os.Link(p("hardsrc"), p("hard2")))
	// Encrypted in place: same name, random bytes.
	rnd := rand.New(rand.NewPCG(9, 10))
	st, err := os.Stat(p("ransom/doc.txt"))
	must(err)
	enc := make([]byte, st.Size())
	for i := range enc {
		enc[i] = byte(rnd.Uint32())
	}
	must(os.WriteFile(p("ransom/doc.txt"), enc, 0o644))
	// Same bytes in new blocks, same metadata: no change.
	st, err = os.Stat(p("moved.txt"))
	must(err)
	b, err := os.ReadFile(p("moved.txt"))
	must(err)
	must(os.WriteFile(p("moved.tmp"), b, 0o644))
	must(os.Chtimes(p("moved.tmp"), st.ModTime(), st.ModTime()))
	must(os.Rename(p("moved.tmp"), p("moved.txt")))
	// The root's mtime changed above, maybe within the second it had
	// (rsync compares directory times in whole seconds): move it on.
	must(os.Chtimes(root, later, later))
}

// lchtimes sets the atime and mtime of p, not following a symlink.
func lchtimes(t testing.TB, p string, at time.Time) {
	t.Helper()
	ts := unix.NsecToTimespec(at.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

// rsyncChanges is what rsync -n -a -i -c -H -X -A --delete reports
// between two kernel mounts, normalised (normChange).
func rsyncChanges(t testing.TB, oldDir, newDir string, acl bool) []string {
	t.Helper()
	args := []string{"-n", "-a", "-i", "-c", "-H", "-X", "--delete"}
	if acl {
		args = append(args, "-A")
	}
	out, err := exec.Command("rsync", append(args, newDir+"/", oldDir+"/")...).CombinedOutput()
	if err != nil {
		t.Fatalf("rsync: %v\n%s", err, out)
	}
	var set []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "*deleting"); ok {
			set = append(set, normPath(strings.TrimSpace(rest))+" -")
			continue
		}
		flags, name, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, " -> ")
		name, _, _ = strings.Cut(name, " => ")
		if len(flags) < 11 {
			t.Fatalf("rsync line %q", line)
		}
		if strings.HasPrefix(flags[2:], "+++") {
			set = append(set, normPath(name)+" +")
			continue
		}
		var fields []string
		for i, f := range map[byte]string{2: "data", 3: "data", 4: "mtime", 5: "mode", 6: "owner", 7: "owner", 9: "acl", 10: "xattrs"} {
			if flags[i] != '.' && flags[i] != ' ' && !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
		if len(fields) == 0 {
			continue // a hard link that rsync re-reports, nothing changed
		}
		sort.Strings(fields)
		set = append(set, normPath(name)+" "+strings.Join(fields, ","))
	}
	sort.Strings(set)
	return set
}

func normPath(p string) string {
	p = strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
	if p == "" || p == "." {
		return "."
	}
	return p
}

// diffJSON is the part of `cairn diff --json` the tests read.
type diffJSON struct {
	From, To string
	Changes  []struct {
		Filesystem, Path, Kind string
		Fields                 []string
		Old, New               *struct {
			Type, Mode string
			Size       int64
			HardLinkTo string `json:"hard_link_to"`
			Entropy    *float64
		}
		Encrypted bool
		Error     string
	}
	Filesystems []struct{ Filesystem, State, Error string }
	Stats       struct {
		Entries       int
		FilesCompared int   `json:"files_compared"`
		SameBlocks    int   `json:"files_same_blocks"`
		FilesRead     int   `json:"files_read"`
		BytesRead     int64 `json:"bytes_read"`
	}
	Summary *struct {
		Kinds     map[string]struct{ Count int }
		Encrypted []string
	}
}

// cairnChanges is the diff's changes of filesystem fs, normalised as
// rsyncChanges does.
func cairnChanges(d diffJSON, fs string) []string {
	var set []string
	for _, c := range d.Changes {
		if c.Filesystem != fs {
			continue
		}
		p := normPath(c.Path)
		switch c.Kind {
		case "added":
			set = append(set, p+" +")
		case "deleted":
			set = append(set, p+" -")
		case "type":
			set = append(set, p+" +") // rsync says only what it creates
		default:
			var fields []string
			for _, f := range c.Fields {
				switch f {
				case "content", "size", "target":
					f = "data"
				}
				if !slices.Contains(fields, f) {
					fields = append(fields, f)
				}
			}
			sort.Strings(fields)
			set = append(set, p+" "+strings.Join(fields, ","))
		}
	}
	sort.Strings(set)
	return set
}

// TestDiffMatchesRsync: `cairn diff` between two points of real ext4 and
// XFS filesystems, each changed through a kernel mount, reports what
// rsync -n -a -i -c -H -X -A --delete reports between the two kernel
// mounts, entry for entry: additions, deletions (of whole trees too),
// same-size-same-mtime content changes, chmod, chown, touch -m,
// setfattr, setfacl, a symlink retargeted, a file become a directory, a
// hard link added; a file rewritten to other blocks with the same bytes
// and metadata is no change; the unchanged large file is not read; a
// file encrypted in place is marked.
func TestDiffMatchesRsync(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.xfs", "rsync", "setfattr", "setfacl", "mount", "umount")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	diffTree(t, src)
	ext1, xfs1 := filepath.Join(dir, "ext4-1.img"), filepath.Join(dir, "xfs-1.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", src, ext1, "64M")
	makeImage(t, xfs1, 300*mib)
	sh(t, "mkfs.xfs", "-q", "-f", xfs1)
	m := filepath.Join(dir, "m")
	um := kernelMount(t, xfs1, m, "loop")
	sh(t, "cp", "-a", src+"/.", m+"/")
	um()
	ext2, xfs2 := filepath.Join(dir, "ext4-2.img"), filepath.Join(dir, "xfs-2.img")
	sh(t, "cp", "--sparse=always", ext1, ext2)
	sh(t, "cp", "--sparse=always", xfs1, xfs2)
	for _, img := range []string{ext2, xfs2} {
		um := kernelMount(t, img, m, "loop")
		diffChanges(t, m, true)
		um()
	}
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	for i, imgs := range [][2]string{{ext1, xfs1}, {ext2, xfs2}} {
		at := time.Date(2026, 11, 1+i, 1, 0, 0, 0, time.UTC)
		mustCairn(t, "--repo", repo, "import", "--vm", "d", "--disk", "sda", "--disk", "sdb", "--time", at.Format(time.RFC3339), imgs[0], imgs[1])
	}
	var d diffJSON
	out := mustCairn(t, "--repo", repo, "diff", "--vm", "d", "--from", "1", "--json", "--entropy")
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if d.From != "2026-11-01T01-00-00Z" || d.To != "2026-11-02T01-00-00Z" || len(d.Filesystems) != 2 {
		t.Fatalf("diff of %s -> %s, filesystems %+v", d.From, d.To, d.Filesystems)
	}
	for i, fs := range []string{"sda/whole", "sdb/whole"} {
		imgs := [2]string{[]string{ext1, xfs1}[i], []string{ext2, xfs2}[i]}
		m1, m2 := filepath.Join(dir, "old"), filepath.Join(dir, "new")
		opts := "loop,ro"
		if fs == "sdb/whole" {
			opts += ",nouuid" // XFS refuses a second filesystem of the same UUID
		}
		u1 := kernelMount(t, imgs[0], m1, opts)
		u2 := kernelMount(t, imgs[1], m2, opts)
		want := rsyncChanges(t, m1, m2, true)
		u1()
		u2()
		got := cairnChanges(d, fs)
		t.Logf("%s: %d entries compared with rsync", fs, len(want))
		if !slices.Equal(got, want) {
			t.Errorf("%s: cairn diff and rsync differ\ncairn: %q\nrsync: %q", fs, got, want)
		}
		if len(want) < 15 {
			t.Errorf("%s: rsync reports only %d changes: the fixture made fewer changes than it should", fs, len(want))
		}
	}
	// What rsync's itemised lines do not say: the hard link's other
	// name, the encrypted file, the unread large file.
	var hard, enc bool
	for _, c := range d.Changes {
		if c.Path == "/hard2" && c.New != nil && c.New.HardLinkTo == "/hardsrc" {
			hard = true
		}
		if c.Encrypted {
			if c.Path != "/ransom/doc.txt" {
				t.Errorf("%s marked encrypted", c.Path)
			}
			enc = true
		}
		if c.Error != "" {
			t.Errorf("%s: %s", c.Path, c.Error)
		}
	}
	if !hard || !enc {
		t.Errorf("hard link named: %v, encrypted file marked: %v\n%s", hard, enc, out)
	}
	t.Logf("stats %+v", d.Stats)
	// Read whole, data/big.bin alone is 16 MiB (both points); only the
	// bytes of files in 64 KiB repository blocks that changed are read.
	if d.Stats.BytesRead >= 8<<20 {
		t.Errorf("the unchanged 8 MiB file was read: %+v", d.Stats)
	}
}

// TestDiffFAT: a FAT filesystem (made and changed with mtools, no kernel
// module needed) diffed in text, --summary and --exclude form: no owners
// or xattrs to compare, content found by its bytes.
func TestDiffFAT(t *testing.T) {
	testutil.RequireTools(t, "mkfs.vfat", "mmd", "mcopy", "mdel")
	dir := t.TempDir()
	old := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, old, old)
		return p
	}
	img := filepath.Join(dir, "fat.img")
	sh(t, "mkfs.vfat", "-C", img, "8192")
	sh(t, "mmd", "-i", img, "::/Docs", "::/Cache")
	sh(t, "mcopy", "-m", "-i", img, write("report.txt", strings.Repeat("quarterly report\n", 100)), write("old.txt", "old\n"), "::/Docs/")
	sh(t, "mcopy", "-m", "-i", img, write("tmp.bin", "cache\n"), "::/Cache/")
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "import", "--vm", "w", "--disk", "sdc", "--time", "2026-11-01T00:00:00Z", img)
	// Same size, same mtime, other bytes; one deleted, one added.
	sh(t, "mcopy", "-o", "-m", "-i", img, write("report.txt", strings.Repeat("QUARTERLY REPORT\n", 100)), "::/Docs/")
	sh(t, "mdel", "-i", img, "::/Docs/old.txt")
	sh(t, "mcopy", "-m", "-i", img, write("new.txt", "new\n"), "::/Docs/")
	sh(t, "mcopy", "-o", "-m", "-i", img, write("tmp.bin", "CACHE\n"), "::/Cache/")
	mustCairn(t, "--repo", repo, "import", "--vm", "w", "--disk", "sdc", "--time", "2026-11-02T00:00:00Z", img)

	out := mustCairn(t, "--repo", repo, "diff", "--vm", "w", "--exclude", "/Cache/*")
	for _, want := range []string{"== sdc/whole\n", "\nmodified  /Docs/report.txt: content\n", "\ndeleted   /Docs/old.txt (file, 4 B)\n", "\nadded     /Docs/new.txt (file, 4 B)\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("cairn diff: no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "tmp.bin") {
		t.Errorf("--exclude /Cache/*: tmp.bin listed\n%s", out)
	}
	var d diffJSON
	out = mustCairn(t, "--repo", repo, "diff", "--vm", "w", "--from", "2026-11-01T00-00-00Z", "--summary", "--json")
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if d.Summary == nil || d.Summary.Kinds["modified"].Count != 2 || d.Summary.Kinds["added"].Count != 1 || d.Summary.Kinds["deleted"].Count != 1 || len(d.Changes) != 0 {
		t.Errorf("--summary --json: %s", out)
	}
	res := runCairn(t, nil, "--repo", repo, "diff", "--vm", "w", "--disk", "sdz")
	if res.code == 0 || !strings.Contains(res.stderr, "--disk sdz selects no filesystem") || !strings.Contains(res.stderr, "it has: sdc/whole (fat") || res.stdout != "" {
		t.Errorf("diff --disk sdz: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = runCairn(t, nil, "--repo", repo, "diff", "--vm", "w", "--from", "latest")
	if res.code == 0 || !strings.Contains(res.stderr, "newest point") {
		t.Errorf("diff --from latest: exit %d\n%s", res.code, res.stderr)
	}
}
