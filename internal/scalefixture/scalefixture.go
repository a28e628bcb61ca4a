package scalefixture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
)

// Version keys cached fixtures: bump it when what Build writes changes.
const Version = 2

// CacheDir is where built fixtures are kept between runs.
const CacheDir = "/var/tmp/cairn-fixtures"

// Spec is the shape of a fixture repository.
type Spec struct {
	VMs    int // number of VMs
	Points int // points per VM (one a day)
	// DiskMiB is each VM's disk size; the first point stores DataMiB of
	// it, every later point ChangedBlocks changed blocks.
	DiskMiB       int
	DataMiB       int
	ChangedBlocks int
	// Ext4VMs VMs (the first ones) hold a real ext4 filesystem.
	Ext4VMs int
}

// Default is the size of a real site: 300 VMs x 40 points.
var Default = Spec{VMs: 300, Points: 40, DiskMiB: 4, DataMiB: 2, ChangedBlocks: 3, Ext4VMs: 2}

// Name is the fixture's cache key.
func (s Spec) Name() string {
	return fmt.Sprintf("scale-v%d-%dx%d-%d-%d-%d-%d", Version, s.VMs, s.Points, s.DiskMiB, s.DataMiB, s.ChangedBlocks, s.Ext4VMs)
}

// Epoch is the time of the first point of every VM; point i is i days later.
var Epoch = time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)

// VMName is the name of VM i.
func VMName(i int) string { return fmt.Sprintf("vm-%04d", i) }

// PointTime is the time of point p (0-based) of a VM.
func PointTime(vm, p int) time.Time {
	return Epoch.Add(time.Duration(p)*24*time.Hour + time.Duration(vm)*time.Second)
}

// Cached returns the cached repository of spec, building it first when it
// is not there (built in a temporary directory beside it and renamed, so a
// killed build leaves no half fixture). logf, if not nil, reports progress.
func Cached(ctx context.Context, spec Spec, logf func(string, ...any)) (string, error) {
	dir := filepath.Join(CacheDir, spec.Name())
	if _, err := os.Stat(filepath.Join(dir, "cairn.json")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(CacheDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(CacheDir, spec.Name()+".building-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := Build(ctx, filepath.Join(tmp, "repo"), spec, logf); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmp, "repo"), dir); err != nil {
		return "", err
	}
	return dir, nil
}

// Build writes a new repository of spec in dir.
func Build(ctx context.Context, dir string, spec Spec, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if spec.VMs <= 0 || spec.Points <= 0 || spec.DiskMiB <= 0 || spec.DataMiB > spec.DiskMiB {
		return fmt.Errorf("scale fixture: bad spec %+v", spec)
	}
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{}); err != nil {
		return err
	}
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{})
	if err != nil {
		return err
	}
	defer repo.Close()
	jobs := backupd.NewJobLog(dir)
	start := time.Now()
	// Two writers: one fills delta images while the other commits.
	const workers = 2
	next := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := buildVM(ctx, repo, jobs, spec, i); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var ferr error
feed:
	for i := 0; i < spec.VMs; i++ {
		select {
		case next <- i:
		case ferr = <-errc:
			break feed
		case <-ctx.Done():
			ferr = ctx.Err()
			break feed
		}
		if i%25 == 0 {
			logf("scale fixture %s: VM %d/%d after %s", spec.Name(), i, spec.VMs, time.Since(start).Round(time.Second))
		}
	}
	close(next)
	wg.Wait()
	if ferr == nil {
		select {
		case ferr = <-errc:
		default:
		}
	}
	return ferr
}

func buildVM(ctx context.Context, repo *blockmap.Repo, jobs *backupd.JobLog, spec Spec, vm int) error {
	name := VMName(vm)
	size := int64(spec.DiskMiB) << 20
	bs := int64(repo.BlockSize())
	rng := rand.New(rand.NewPCG(uint64(vm), Version))
	var first []byte
	if vm < spec.Ext4VMs {
		img, err := ext4Image(ctx, size, vm)
		if err != nil {
			return err
		}
		first = img
	} else {
		first = make([]byte, size)
		for off := 0; off < spec.DataMiB<<20; off += 8 {
			v := rng.Uint64()
			for k := 0; k < 8; k++ {
				first[off+k] = byte(v >> (8 * k))
			}
		}
	}
	nblocks := size / bs
	for p := 0; p < spec.Points; p++ {
		t := PointTime(vm, p)
		jobID := fmt.Sprintf("%s-%d", name, p)
		// The metadata a vSphere backup keeps with a point and its disk
		// (backupd.PointMeta, backupd.DiskMeta), so point records have
		// their real size.
		meta, _ := json.Marshal(backupd.PointMeta{Source: "vsphere", VCenter: "vc.example", VMMoRef: fmt.Sprintf("vm-%d", 1000+vm), VMName: name,
			HardwareVersion: "vmx-19", JobID: jobID, Snapshot: "cairn-" + jobID, Consistency: blockmap.ConsistencyQuiesced})
		s, err := repo.BeginPoint(ctx, name, blockmap.PointOptions{Time: t, Consistency: blockmap.ConsistencyQuiesced, Purpose: "scale fixture", Meta: meta})
		if err != nil {
			return err
		}
		var changed []blockmap.Extent
		var blocks []int64
		if p > 0 {
			for k := 0; k < spec.ChangedBlocks; k++ {
				// ext4 VMs change blocks in the image's last quarter
				// (free space of the small filesystem), the others anywhere.
				lo := int64(0)
				if vm < spec.Ext4VMs {
					lo = nblocks * 3 / 4
				}
				blocks = append(blocks, lo+rng.Int64N(nblocks-lo))
			}
			for _, b := range blocks {
				changed = append(changed, blockmap.Extent{Offset: b * bs, Length: bs})
			}
		}
		dmeta, _ := json.Marshal(backupd.DiskMeta{Label: "Hard disk 1", BackingFile: fmt.Sprintf("[datastore1] %s/%s.vmdk", name, name), Capacity: size,
			UUID: fmt.Sprintf("6000C29%025d", vm), DeviceKey: 2000, ChangeID: fmt.Sprintf("52 1a 3f 7c 9e 4b 2d 81-0a 5c 6e 7f 8d 9a 0b %02x/%d", vm%256, p+1),
			BaseChangeID: "*", Transport: "nbd", BytesRead: int64(spec.ChangedBlocks) * bs, ChangedBytes: int64(spec.ChangedBlocks) * bs, Full: p == 0})
		dw, err := s.AddDisk(ctx, "disk0", size, blockmap.DiskOptions{Changed: changed, Meta: dmeta})
		if err != nil {
			s.Abort(ctx)
			return err
		}
		var written int64
		if p == 0 {
			if _, err := dw.WriteAt(first, 0); err != nil {
				s.Abort(ctx)
				return err
			}
			written = size
		} else {
			buf := make([]byte, bs)
			for _, b := range blocks {
				for k := range buf {
					buf[k] = byte(rng.Uint32())
				}
				if err := dw.WriteBlock(b, buf); err != nil {
					s.Abort(ctx)
					return err
				}
				written += bs
			}
		}
		dw.AddBytesRead(written)
		pt, err := s.Commit(ctx)
		if err != nil {
			s.Abort(ctx)
			return err
		}
		rec := backupd.JobRecord{ID: jobID, Kind: backupd.JobBackup, VM: name, VCenter: "vc.example",
			Start: t, State: backupd.JobRunning, PID: 1, Host: "scale-fixture"}
		if err := jobs.Append(rec); err != nil {
			return err
		}
		rec.End, rec.State, rec.Point, rec.Consistency = t.Add(90*time.Second), backupd.JobOK, pt.ID, pt.Consistency
		rec.BytesRead, rec.BytesWritten = written, pt.StoredBytes()
		if err := jobs.Append(rec); err != nil {
			return err
		}
	}
	return nil
}

// ext4Image is a real ext4 filesystem of size bytes with a few files.
func ext4Image(ctx context.Context, size int64, vm int) ([]byte, error) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return nil, errors.New("scale fixture: mkfs.ext4 is missing (apt-get install e2fsprogs)")
	}
	tmp, err := os.MkdirTemp("", "scalefixture-ext4-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	for _, d := range []string{"etc", "home/user", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"etc/hostname":        VMName(vm) + "\n",
		"home/user/notes.txt": "scale fixture guest " + strconv.Itoa(vm) + "\n",
		"var/log/boot.log":    "booted\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return nil, err
		}
	}
	img := filepath.Join(tmp, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return nil, err
	}
	if err := os.Truncate(img, size); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-U", "clear", "-d", root, img).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mkfs.ext4: %v: %s", err, out)
	}
	return os.ReadFile(img)
}
