package test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// treeSpec says what a generated guest tree contains; filesystems without
// symlinks, hard links or POSIX modes (FAT) turn those off.
type treeSpec struct {
	files     int   // small files spread over directories
	bigDir    int   // entries in one flat directory
	depth     int   // nesting of the deep tree
	bigFile   int64 // size of the one large file
	links     bool  // symlinks and hard links
	modes     bool  // varied modes incl. setuid and sticky
	longNames bool  // 255-byte names
	sparse    bool  // sparse files
	bmpOnly   bool  // no names outside Unicode's basic plane (mtools drops them)
}

// makeGuestTree writes a source tree with the real things guests have.
func makeGuestTree(t testing.TB, root string, spec treeSpec, seed uint64) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(root, 0o755))
	old := time.Date(1999, 12, 31, 23, 59, 58, 0, time.UTC)
	for i := 0; i < spec.files; i++ {
		dir := filepath.Join(root, "etc", fmt.Sprintf("d%02d", i%37))
		must(os.MkdirAll(dir, 0o755))
		p := filepath.Join(dir, fmt.Sprintf("file-%04d.conf", i))
		must(os.WriteFile(p, []byte(strings.Repeat(fmt.Sprintf("line %d of %d seed %d\n", i, spec.files, seed), 1+i%40)), 0o644))
		if i%10 == 0 {
			must(os.Chtimes(p, old, old.Add(time.Duration(i)*time.Hour)))
		}
	}
	big := filepath.Join(root, "big")
	must(os.MkdirAll(big, 0o755))
	for i := 0; i < spec.bigDir; i++ {
		f, err := os.Create(filepath.Join(big, fmt.Sprintf("entry-%05d", i)))
		must(err)
		if i%100 == 0 {
			fmt.Fprintf(f, "%d\n", i)
		}
		f.Close()
	}
	deep := root
	for i := 0; i < spec.depth; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("level%d", i))
	}
	must(os.MkdirAll(deep, 0o755))
	must(os.WriteFile(filepath.Join(deep, "bottom.txt"), []byte("deep\n"), 0o644))
	names := []string{"Grüße aus Köln.txt", "日本語のファイル名.txt", "space name.txt"}
	if !spec.bmpOnly {
		names = append(names, "emoji-🙂.txt")
	}
	if spec.longNames {
		names = append(names, strings.Repeat("L", 251)+".txt")
	}
	must(os.MkdirAll(filepath.Join(root, "names"), 0o755))
	for i, n := range names {
		must(os.WriteFile(filepath.Join(root, "names", n), []byte(fmt.Sprintf("name %d\n", i)), 0o644))
	}
	must(os.WriteFile(filepath.Join(root, "empty"), nil, 0o644))
	must(os.MkdirAll(filepath.Join(root, "data"), 0o755))
	if spec.bigFile > 0 {
		writeRandom(t, filepath.Join(root, "data", "big.bin"), 0, spec.bigFile, seed)
	}
	if spec.sparse {
		p := filepath.Join(root, "data", "sparse.bin")
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, err := os.Create(p)
		must(err)
		f.WriteAt([]byte("start"), 0)
		f.WriteAt([]byte("middle"), 64<<20)
		must(f.Truncate(200 << 20))
		f.Close()
	}
	if spec.links {
		must(os.Symlink("etc/d01/file-0001.conf", filepath.Join(root, "link-relative")))
		must(os.Symlink("/etc/hostname", filepath.Join(root, "link-absolute")))
		must(os.Symlink(strings.Repeat("long/", 60)+"target", filepath.Join(root, "link-long")))
		must(os.Link(filepath.Join(root, "etc", "d02", "file-0002.conf"), filepath.Join(root, "hardlink.conf")))
	}
	if spec.modes {
		for p, m := range map[string]os.FileMode{"mode-setuid": 0o4755, "mode-sticky-dir": 0o1777 | os.ModeDir, "mode-private": 0o600, "mode-exec": 0o755} {
			path := filepath.Join(root, p)
			if m&os.ModeDir != 0 {
				must(os.Mkdir(path, 0o755))
			} else {
				must(os.WriteFile(path, []byte(p), 0o644))
			}
			must(os.Chmod(path, m&os.ModePerm|m&(os.ModeSetuid|os.ModeSticky)))
		}
	}
}

// fileRecord is what the comparison checks of one path.
type fileRecord struct {
	mode   fs.FileMode
	size   int64
	mtime  time.Time
	sha    string
	target string
	ino    uint64
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// walkTree records every path below root (relative), reading file bytes.
func walkTree(t testing.TB, root string, skip func(rel string) bool) map[string]fileRecord {
	t.Helper()
	out := map[string]fileRecord{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || (skip != nil && skip(rel)) {
			if rel != "." && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		r := fileRecord{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime(), ino: fi.Sys().(*syscall.Stat_t).Ino}
		switch {
		case fi.Mode().IsRegular():
			if r.sha, err = sha256File(p); err != nil {
				return fmt.Errorf("read %s: %w", rel, err)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			if r.target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		out[rel] = r
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// compareOpts say how strictly metadata must match for a filesystem type.
type compareOpts struct {
	modes     bool          // compare permission and special bits
	mtimeGran time.Duration // 0 = exact
	links     bool          // symlink targets and hard-link identity
}

func compareTrees(t *testing.T, want, got map[string]fileRecord, o compareOpts) {
	t.Helper()
	bad := 0
	report := func(f string, a ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(f, a...)
		}
	}
	for rel, w := range want {
		g, ok := got[rel]
		if !ok {
			report("%s: missing in the mount", rel)
			continue
		}
		if w.mode.Type() != g.mode.Type() {
			report("%s: type %v, want %v", rel, g.mode.Type(), w.mode.Type())
			continue
		}
		if o.modes && w.mode != g.mode {
			report("%s: mode %v, want %v", rel, g.mode, w.mode)
		}
		if w.mode.IsRegular() {
			if w.size != g.size || w.sha != g.sha {
				report("%s: size %d sha %.12s, want size %d sha %.12s", rel, g.size, g.sha, w.size, w.sha)
			}
			d := w.mtime.Sub(g.mtime)
			if d < 0 {
				d = -d
			}
			if (o.mtimeGran == 0 && !w.mtime.Equal(g.mtime)) || (o.mtimeGran > 0 && d > o.mtimeGran) {
				report("%s: mtime %v, want %v", rel, g.mtime, w.mtime)
			}
		}
		if o.links && w.mode&fs.ModeSymlink != 0 && w.target != g.target {
			report("%s: symlink target %q, want %q", rel, g.target, w.target)
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			report("%s: in the mount but not in the source", rel)
		}
	}
	if o.links {
		hw, hg := want["hardlink.conf"], got["hardlink.conf"]
		ow, og := want[filepath.Join("etc", "d02", "file-0002.conf")], got[filepath.Join("etc", "d02", "file-0002.conf")]
		if hw.ino == ow.ino && hg.ino != og.ino {
			report("hard links are different inodes in the mount (%d, %d)", hg.ino, og.ino)
		}
	}
	if bad > 20 {
		t.Errorf("... %d differences in all", bad)
	}
}

func sh(t testing.TB, cmd string, args ...string) {
	t.Helper()
	if out, err := exec.Command(cmd, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", cmd, strings.Join(args, " "), err, out)
	}
}
