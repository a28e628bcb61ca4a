package blockmap

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Modes of everything cairn creates in a repository: backup data is the
// VMs' disks, so only the repository's owner may read it, whatever the
// process umask is (see docs/security.md).
const (
	FileMode fs.FileMode = 0o600
	DirMode  fs.FileMode = 0o700
)

// looseBits are the permission bits no repository path may have.
const looseBits fs.FileMode = 0o077

// LooseModes lists the paths under the repository (the repository
// directory included) that users other than its owner may read, write or
// enter, in lexical order. `cairn verify` reports them; the next writer
// that opens the repository (a backup, import, prune or forget) fixes
// them.
func (r *Repo) LooseModes() ([]string, error) { return looseModes(r.dir) }

func looseModes(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked (a prune, a temp file)
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if fi.Mode().Perm()&looseBits != 0 {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// fixModes makes every directory under dir (dir included) DirMode and
// every file FileMode where they allow more than their owner. It reports
// how many it changed; paths that vanish meanwhile are skipped. Children
// are changed before their parents, so dir itself is private only once
// everything below it is (fixRepoModes relies on that).
func fixModes(dir string) (int, error) {
	loose, err := looseModes(dir)
	n := 0
	for i := len(loose) - 1; i >= 0; i-- {
		p := loose[i]
		fi, serr := os.Lstat(p)
		if serr != nil {
			continue
		}
		mode := FileMode
		if fi.IsDir() {
			mode = DirMode
		}
		if cerr := os.Chmod(p, mode); cerr != nil {
			if !errors.Is(cerr, fs.ErrNotExist) && err == nil {
				err = cerr
			}
			continue
		}
		n++
	}
	return n, err
}

// FixModes makes the whole repository private to its owner now (0600
// files, 0700 directories), as the first update of this Repo would, and
// reports how many paths it changed. A long-lived writer (cairn serve)
// calls it when it starts, so an older world-readable repository is not
// left open until its first backup.
func (r *Repo) FixModes() (int, error) {
	r.modesOnce.Do(func() {})
	n, err := fixModes(r.dir)
	if err == nil && n > 0 {
		r.log.Info("made repository files private to their owner (0600 files, 0700 directories)", "dir", r.dir, "changed", n)
	}
	return n, err
}

// fixRepoModes tightens the index directory's modes after every update
// (Badger creates its files 0644) and, the first time this Repo writes,
// the whole repository's when its directory is not private yet (older
// cairn versions made everything world-readable; fixModes makes the
// directory private last, so a private one has been fixed whole, and a
// backup does not walk every delta image each time it starts).
func (r *Repo) fixRepoModes() {
	_, err := fixModes(filepath.Join(r.dir, "index"))
	first := false
	r.modesOnce.Do(func() { first = true })
	n := 0
	if first && err == nil {
		if fi, serr := os.Stat(r.dir); serr != nil || fi.Mode().Perm()&looseBits != 0 {
			n, err = fixModes(r.dir)
		}
		r.ensureReserve(false) // a repository made before the reserve existed
	}
	if err != nil {
		r.log.Warn("cannot make the repository private to its owner; run cairn as the repository's owner or fix the modes (chmod -R go-rwx)", "dir", r.dir, "error", err)
		return
	}
	if n > 0 {
		r.log.Info("made repository files private to their owner (0600 files, 0700 directories)", "dir", r.dir, "changed", n)
	}
}
