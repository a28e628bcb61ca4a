package lab

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/internal/esxsim"
)

// maxAppLog bounds /var/log/app.log: beyond it the log keeps its last half.
const maxAppLog = 64 << 10

// guest is one VM's guest OS: it owns the working image of the system disk
// and changes a few files every tick.
type guest struct {
	vm  string
	sim *esxsim.Sim
	gw  *esxsim.GuestWriter
	// ref is the VM the guest last ran in (see awake).
	ref         types.ManagedObjectReference
	img         *image
	jr          *journal
	journalPath string
	log         *slog.Logger
	rng         *rand.Rand

	mu     sync.Mutex // guards batch and wasOff for readers outside the writer
	batch  int
	wasOff bool     // the VM was seen powered off (or gone) since the guest last ran
	docs   []string // paths of the documents the writer may change or delete
	appLog []byte
}

// newGuest fills the VM's disks with their initial content (batch 0) and
// opens the system disk's working image for later changes.
func newGuest(ctx context.Context, sim *esxsim.Sim, dir, vm string, n, ndisks int, log *slog.Logger) (*guest, error) {
	gw, err := sim.Guest(vm)
	if err != nil {
		return nil, fmt.Errorf("guest of %s: %w", vm, err)
	}
	disks, err := sim.Disks(vm)
	if err != nil {
		return nil, fmt.Errorf("disks of %s: %w", vm, err)
	}
	g := &guest{
		vm: vm, sim: sim, gw: gw, log: log.With("vm", vm),
		journalPath: filepath.Join(dir, "journal", vm+".jsonl"),
		rng:         rand.New(rand.NewPCG(uint64(n), uint64(time.Now().UnixNano()))),
	}
	if g.jr, err = openJournal(g.journalPath); err != nil {
		return nil, err
	}
	files := osTree(vm, n)
	g.img, err = createImage(filepath.Join(dir, "guest", vm+"-system.img"), disks[0].Size, tableGPT, "system", files, 0)
	if err != nil {
		g.close()
		return nil, fmt.Errorf("system disk of %s: %w", vm, err)
	}
	for p := range files {
		if strings.HasPrefix(p, "/home/user/docs/") {
			g.docs = append(g.docs, p)
		}
	}
	sort.Strings(g.docs)
	g.appLog = files["/var/log/app.log"]
	if err := g.img.check(files, nil); err != nil {
		g.close()
		return nil, fmt.Errorf("system disk of %s: %w", vm, err)
	}
	entries, err := g.syncInitial(0, g.img, files)
	if err != nil {
		g.close()
		return nil, err
	}
	if ndisks > 1 {
		more, err := g.setUpDataDisk(ctx, dir, n, disks[1].Size)
		if err != nil {
			g.close()
			return nil, err
		}
		entries = append(entries, more...)
	}
	if err := g.jr.append(entries); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

// setUpDataDisk fills disk 1: an MBR with a FAT32 partition and, when
// mkfs.ext4 is installed, an ext4 partition 2. Its content never changes.
func (g *guest) setUpDataDisk(ctx context.Context, dir string, n int, size int64) ([]JournalEntry, error) {
	data := dataTree(g.vm, n)
	var ext4Files map[string][]byte
	var reserve int64
	if haveMkfsExt4() && size >= MinDiskSize+ext4Size {
		ext4Files, reserve = ext4Tree(g.vm, n), ext4Size
	}
	img, err := createImage(filepath.Join(dir, "guest", g.vm+"-data.img"), size, tableMBR, "data", data, reserve)
	if err != nil {
		return nil, fmt.Errorf("data disk of %s: %w", g.vm, err)
	}
	defer os.Remove(img.path)
	defer img.close()
	if err := img.check(data, nil); err != nil {
		return nil, fmt.Errorf("data disk of %s: %w", g.vm, err)
	}
	if ext4Files != nil {
		if err := img.writeExt4(ctx, filepath.Join(dir, "guest"), "data-ext4", ext4Files); err != nil {
			return nil, fmt.Errorf("data disk of %s: %w", g.vm, err)
		}
	}
	start := time.Now().UTC()
	if _, err := g.gw.SyncFromImage(1, img.path); err != nil {
		return nil, fmt.Errorf("copy initial content to disk 1 of %s: %w", g.vm, err)
	}
	now := time.Now().UTC()
	entries := initialEntries(start, now, g.vm, 1, 1, data)
	return append(entries, initialEntries(start, now, g.vm, 1, 2, ext4Files)...), nil
}

// syncInitial copies a freshly built image onto a disk and returns the
// batch-0 journal entries of its files.
func (g *guest) syncInitial(disk int, img *image, files map[string][]byte) ([]JournalEntry, error) {
	start := time.Now().UTC()
	if _, err := g.gw.SyncFromImage(disk, img.path); err != nil {
		return nil, fmt.Errorf("copy initial content to disk %d of %s: %w", disk, g.vm, err)
	}
	return initialEntries(start, time.Now().UTC(), g.vm, disk, 1, files), nil
}

// initialEntries are the batch-0 journal entries of a partition's files.
func initialEntries(start, now time.Time, vm string, disk, part int, files map[string][]byte) []JournalEntry {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	out := make([]JournalEntry, 0, len(paths))
	for _, p := range paths {
		out = append(out, JournalEntry{Start: start, Time: now, Batch: 0, VM: vm, Disk: disk, Part: part, Path: p,
			SHA256: sha256Hex(files[p]), Size: int64(len(files[p]))})
	}
	return out
}

// run waits delay, then changes the guest's files every interval until ctx is done or a
// change fails (then the guest stops writing and says why).
func (g *guest) run(ctx context.Context, delay, interval time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(delay):
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if on, err := g.awake(); err != nil || !on {
			if err != nil {
				g.log.Error("guest writer stopped", "err", err)
				return
			}
			continue
		}
		if err := g.step(); err != nil {
			g.log.Error("guest writer stopped", "err", err)
			return
		}
	}
}

// step applies one batch: the changes planBatch chose are made on the
// working image and checked, then the changed blocks are copied into the
// running disk in one SyncFromImage, which a snapshot sees entirely or not
// at all, and journaled.
func (g *guest) step() error {
	batch := g.batch + 1
	start := time.Now()
	written, deleted := g.planBatch(batch)
	paths := make([]string, 0, len(written))
	for p := range written {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := g.img.writeFile(p, written[p]); err != nil {
			return fmt.Errorf("batch %d: %w", batch, err)
		}
	}
	for _, p := range deleted {
		if err := g.img.removeFile(p); err != nil {
			return fmt.Errorf("batch %d: %w", batch, err)
		}
	}
	if err := g.img.check(written, deleted); err != nil {
		return fmt.Errorf("batch %d: %w", batch, err)
	}
	syncStart := time.Now().UTC()
	ext, err := g.gw.SyncFromImage(0, g.img.path)
	if err != nil {
		return fmt.Errorf("batch %d: copy to the running disk: %w", batch, err)
	}
	now := time.Now().UTC()
	entries := make([]JournalEntry, 0, len(paths)+len(deleted))
	for _, p := range paths {
		entries = append(entries, JournalEntry{Start: syncStart, Time: now, Batch: batch, VM: g.vm, Disk: 0, Part: 1, Path: p,
			SHA256: sha256Hex(written[p]), Size: int64(len(written[p]))})
	}
	for _, p := range deleted {
		entries = append(entries, JournalEntry{Start: syncStart, Time: now, Batch: batch, VM: g.vm, Disk: 0, Part: 1, Path: p, Deleted: true})
	}
	if err := g.jr.append(entries); err != nil {
		return fmt.Errorf("batch %d: %w", batch, err)
	}
	g.mu.Lock()
	g.batch = batch
	g.mu.Unlock()
	g.log.Debug("guest batch", "batch", batch, "written", len(paths), "deleted", len(deleted),
		"extents", len(ext), "took", time.Since(start), "sync", now.Sub(syncStart))
	return nil
}

// planBatch chooses a batch's changes: a line appended to the application
// log, 1-3 documents rewritten, one added, one deleted (while more than 60
// remain), and the batch number in GenerationFile. It returns the new
// content of every written file and the deleted paths.
func (g *guest) planBatch(batch int) (map[string][]byte, []string) {
	written := map[string][]byte{}
	var deleted []string
	line := fmt.Sprintf("%s batch %d: %s", time.Now().UTC().Format(time.RFC3339Nano), batch, text(g.rng, 40))
	g.appLog = append(g.appLog, line...)
	if len(g.appLog) > maxAppLog {
		g.appLog = append([]byte(nil), g.appLog[len(g.appLog)-maxAppLog/2:]...)
	}
	written["/var/log/app.log"] = g.appLog
	for i := 0; i < 1+g.rng.IntN(3) && len(g.docs) > 0; i++ {
		written[g.docs[g.rng.IntN(len(g.docs))]] = text(g.rng, 100+g.rng.IntN(16<<10))
	}
	if len(g.docs) > 60 {
		victim := g.docs[g.rng.IntN(len(g.docs))]
		if _, ok := written[victim]; !ok {
			deleted = append(deleted, victim)
			g.docs = removeString(g.docs, victim)
		}
	}
	added := fmt.Sprintf("/home/user/docs/new-%06d.txt", batch)
	written[added] = text(g.rng, 100+g.rng.IntN(8<<10))
	g.docs = append(g.docs, added)
	written[GenerationFile] = []byte(strconv.Itoa(batch) + "\n")
	return written, deleted
}

// batchDone is the number of the last batch on the disk and in the journal.
func (g *guest) batchDone() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.batch
}

func (g *guest) close() error {
	var err error
	if g.img != nil {
		err = g.img.close()
	}
	if g.jr != nil {
		if cerr := g.jr.close(); err == nil {
			err = cerr
		}
	}
	return err
}

func removeString(s []string, v string) []string {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}
