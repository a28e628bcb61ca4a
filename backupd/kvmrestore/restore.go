package kvmrestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/backupd/nbdserve"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/blockmap"
)

// ErrNoConfig means the point has no VM configuration (an import without
// --vm-config) and none was given.
var ErrNoConfig = errors.New("the point has no VM configuration")

// ErrToolMissing means qemu-img (for qcow2) or the OVMF firmware (for a
// UEFI guest) is not installed.
var ErrToolMissing = errors.New("a tool the restore needs is not installed")

// Request is one restore of a point to KVM.
type Request struct {
	Point blockmap.Point
	// Config replaces the point's recorded configuration (needed for a
	// point that has none).
	Config *vmconfig.Config
	Spec   Spec
	// Progress, when set, is told when a disk starts being written.
	Progress func(d PlannedDisk, size int64)
	Logger   *slog.Logger
}

// Result is what a restore wrote.
type Result struct {
	VM    string `json:"vm"`
	Point string `json:"point"`
	*Plan
	// Sizes and DataBytes by disk name: the disk's size and the bytes of
	// data written (the rest are holes).
	Sizes     map[string]int64 `json:"sizes"`
	DataBytes map[string]int64 `json:"data_bytes"`
}

// RemovedError is a failed restore's error with the temporary files it
// removed.
type RemovedError struct {
	Err     error
	Removed []string
}

func (e *RemovedError) Error() string {
	if len(e.Removed) == 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("%v (removed what it had written: %s)", e.Err, strings.Join(e.Removed, ", "))
}

// Unwrap gives the cause.
func (e *RemovedError) Unwrap() error { return e.Err }

// partial is the temporary name of a file until the restore is complete.
func partial(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".cairn-partial")
}

// Prepare reads the point's configuration (or req.Config) and makes the
// plan, without writing anything.
func Prepare(ctx context.Context, repo *blockmap.Repo, req Request) (*Plan, error) {
	p := req.Point
	cfg := req.Config
	if cfg == nil {
		c, ok, err := boot.PointConfig(ctx, repo, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("point %s of %s: %w", p.ID, p.VM, ErrNoConfig)
		}
		cfg = c
	}
	var vmx []byte
	if name := vmconfig.VMXAttachment(cfg.Name); hasAttachment(p, name) {
		data, err := repo.Attachment(ctx, p, name)
		if err != nil {
			return nil, fmt.Errorf("point %s of %s: %s: %w", p.ID, p.VM, name, err)
		}
		vmx = data
	}
	names := make([]string, len(p.Disks))
	for i, d := range p.Disks {
		names[i] = d.Name
	}
	return MakePlan(cfg, names, vmx, req.Spec, p.VM, p.ID)
}

func hasAttachment(p blockmap.Point, name string) bool {
	_, ok := p.Attachment(name)
	return ok
}

// files are the final paths a plan writes.
func (p *Plan) files() []string {
	var out []string
	for _, d := range p.Disks {
		out = append(out, d.File)
	}
	if p.NVRAM != "" {
		out = append(out, p.NVRAM)
	}
	return append(out, p.XMLFile)
}

// Restore writes the point's disks, the UEFI variables (for a UEFI guest)
// and the domain XML into req.Spec.Dir (made if missing). Every file is
// written under a temporary name and renamed when all are complete; on
// failure or cancellation the temporary files are removed and named in
// the RemovedError. An existing target file is an ExistsError unless
// req.Spec.Force.
func Restore(ctx context.Context, repo *blockmap.Repo, req Request) (res *Result, err error) {
	log := req.Logger
	if log == nil {
		log = slog.Default()
	}
	plan, err := Prepare(ctx, repo, req)
	if err != nil {
		return nil, err
	}
	spec := req.Spec
	if !req.Spec.Force {
		for _, f := range plan.files() {
			if _, err := os.Lstat(f); err == nil {
				return nil, &ExistsError{Path: f}
			}
		}
	}
	if plan.Format == FormatQCOW2 {
		if _, err := exec.LookPath("qemu-img"); err != nil {
			return nil, fmt.Errorf("qemu-img not found: %w: install the Debian package qemu-utils, or write raw images (--format raw)", ErrToolMissing)
		}
	}
	if plan.NVRAMTemplate != "" {
		if _, err := os.Stat(plan.NVRAMTemplate); err != nil {
			return nil, fmt.Errorf("UEFI variables template %s not found: %w: install the Debian package ovmf", plan.NVRAMTemplate, ErrToolMissing)
		}
	}
	if fi, err := os.Stat(spec.Dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory (give --dir a directory)", spec.Dir)
	}
	dir := filepath.Dir(plan.XMLFile) // absolute
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var temps []string
	defer func() {
		if err == nil {
			return
		}
		var removed []string
		for _, t := range temps {
			if os.Remove(t) == nil {
				removed = append(removed, t)
			}
		}
		if os.IsNotExist(statErr) && os.Remove(dir) == nil { // made here, and empty
			removed = append(removed, dir)
		}
		err = &RemovedError{Err: err, Removed: removed}
	}()
	res = &Result{VM: req.Point.VM, Point: req.Point.ID, Plan: plan, Sizes: map[string]int64{}, DataBytes: map[string]int64{}}
	for _, d := range plan.Disks {
		tmp := partial(d.File)
		os.Remove(tmp) // a killed restore's
		temps = append(temps, tmp)
		dr, err := repo.OpenDisk(ctx, req.Point, d.Name)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Name, err)
		}
		if req.Progress != nil {
			req.Progress(d, dr.Size())
		}
		res.Sizes[d.Name], res.DataBytes[d.Name] = dr.Size(), dr.DataBytes()
		log.Debug("writing disk", "disk", d.Name, "file", d.File, "size", dr.Size(), "data", dr.DataBytes())
		if plan.Format == FormatRaw {
			err = writeRaw(ctx, dr, tmp)
		} else {
			err = writeQCOW2(ctx, dr, tmp, log)
		}
		dr.Close()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("disk %s: %w", d.Name, err)
		}
	}
	if plan.NVRAM != "" {
		tmp := partial(plan.NVRAM)
		temps = append(temps, tmp)
		if err := copyFile(plan.NVRAMTemplate, tmp); err != nil {
			return nil, fmt.Errorf("UEFI variables: %w", err)
		}
	}
	x, err := plan.XML()
	if err != nil {
		return nil, err
	}
	tmp := partial(plan.XMLFile)
	temps = append(temps, tmp)
	if err := writeFileSync(tmp, x, 0o644); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, f := range plan.files() {
		if err := os.Rename(partial(f), f); err != nil {
			return nil, err
		}
	}
	syncDir(dir)
	return res, nil
}

func writeRaw(ctx context.Context, dr *blockmap.DiskReader, path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = dr.ExportSparse(ctx, f, nil)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeQCOW2 serves the disk over NBD on a private unix socket and has
// qemu-img convert it: qemu-img asks the export's block status, so the
// point's holes stay unallocated clusters.
func writeQCOW2(ctx context.Context, dr *blockmap.DiskReader, path string, log *slog.Logger) error {
	sockDir, err := os.MkdirTemp("", "cairn-kvm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(sockDir)
	exp, err := nbdserve.NewExport(dr, nbdserve.Options{Logger: log})
	if err != nil {
		return err
	}
	sock := filepath.Join(sockDir, "nbd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = exp.Serve(sctx, ln)
	}()
	defer func() {
		cancel()
		ln.Close()
		wg.Wait()
	}()
	cmd := exec.CommandContext(ctx, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
		"nbd+unix:///?socket="+sock, path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img convert: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeFileSync(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
