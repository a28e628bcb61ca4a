package lab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fat"
)

// awake reports whether the guest runs now: only while its VM is powered
// on (a powered-off or missing VM's guest writes nothing). A guest whose
// VM was off, or is another VM of the same name (a restore over a deleted
// original), boots first: it reads the running disk into its working
// image, as an OS reads its disk when it starts, and journals everything
// it found as one batch (every file, and the files it knew that are gone).
// So a rollback or a restore is not undone by the guest's next batch, and
// replaying the journal stays exact.
func (g *guest) awake() (bool, error) {
	st, ref, err := g.sim.PowerState(g.vm)
	if errors.Is(err, esxsim.ErrNotFound) {
		g.setOff(true)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st != types.VirtualMachinePowerStatePoweredOn {
		g.setOff(true)
		return false, nil
	}
	if g.ref.Value == "" {
		g.ref = ref
	}
	if !g.sawOff() && ref == g.ref {
		return true, nil
	}
	if err := g.boot(); err != nil {
		return false, fmt.Errorf("boot after the VM was off or replaced: %w", err)
	}
	g.ref = ref
	g.setOff(false)
	return true, nil
}

func (g *guest) setOff(off bool) {
	g.mu.Lock()
	g.wasOff = off
	g.mu.Unlock()
}

// sawOff reports whether the guest has seen its VM off (or gone) and not
// run since; once it has, no batch is in flight.
func (g *guest) sawOff() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.wasOff
}

// boot makes the working image the running system disk again and
// journals the state it holds as the next batch.
func (g *guest) boot() error {
	start := time.Now().UTC()
	before, err := g.img.files()
	if err != nil {
		return err
	}
	disks, err := g.sim.Disks(g.vm)
	if err != nil {
		return err
	}
	if err := g.img.close(); err != nil {
		return err
	}
	if err := copySparse(disks[0].LocalPath, g.img.path); err != nil {
		return err
	}
	if err := g.img.reopen(); err != nil {
		return err
	}
	now, err := g.img.files()
	if err != nil {
		return err
	}
	batch := g.batch + 1
	paths := make([]string, 0, len(now))
	for p := range now {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	g.docs = g.docs[:0]
	entries := make([]JournalEntry, 0, len(paths))
	for _, p := range paths {
		if strings.HasPrefix(p, "/home/user/docs/") {
			g.docs = append(g.docs, p)
		}
		entries = append(entries, JournalEntry{Start: start, Time: start, Batch: batch, VM: g.vm, Disk: 0, Part: 1, Path: p,
			SHA256: sha256Hex(now[p]), Size: int64(len(now[p]))})
	}
	for p := range before {
		if _, ok := now[p]; !ok {
			entries = append(entries, JournalEntry{Start: start, Time: start, Batch: batch, VM: g.vm, Disk: 0, Part: 1, Path: p, Deleted: true})
		}
	}
	g.appLog = append([]byte(nil), now["/var/log/app.log"]...)
	if err := g.jr.append(entries); err != nil {
		return err
	}
	g.mu.Lock()
	g.batch = batch
	g.mu.Unlock()
	g.log.Info("guest booted from its disk", "batch", batch, "files", len(now))
	return nil
}

// files reads every regular file of the image's FAT volume.
func (img *image) files() (map[string][]byte, error) {
	f, err := os.Open(img.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vol, err := fat.Open(f, img.partOff, img.partSize)
	if err != nil {
		return nil, fmt.Errorf("open FAT of %s: %w", img.path, err)
	}
	fsys := partinfo.AsFS(vol)
	out := map[string][]byte{}
	err = iofs.WalkDir(fsys, ".", func(p string, d iofs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := iofs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		out["/"+p] = data
		return nil
	})
	return out, err
}

// copySparse copies the raw disk src over dst, leaving zero blocks as holes.
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < st.Size(); {
		n, err := in.ReadAt(buf, off)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				out.Close()
				return werr
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Truncate(st.Size()); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
