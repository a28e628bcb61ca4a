package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/cairnbackup/cairn/backupd/nbdserve"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/blockmap"
)

// PointConfig reads a point's VM configuration; ok is false when it has
// none (an import without --vm-config).
func PointConfig(ctx context.Context, repo *blockmap.Repo, p blockmap.Point) (*vmconfig.Config, bool, error) {
	if _, ok := p.Attachment(vmconfig.AttachmentConfig); !ok {
		return nil, false, nil
	}
	data, err := repo.Attachment(ctx, p, vmconfig.AttachmentConfig)
	if err != nil {
		return nil, false, err
	}
	cfg, err := vmconfig.ParseRecorded(data)
	if err != nil {
		return nil, false, fmt.Errorf("point %s of %s: %s: %w", p.ID, p.VM, vmconfig.AttachmentConfig, err)
	}
	return cfg, true, nil
}

// PointMachine is a Machine whose disks are a point's, served read-only
// over NBD on unix sockets in the run directory.
type PointMachine struct {
	*Machine
	cancel  context.CancelFunc
	once    sync.Once
	wg      sync.WaitGroup
	readers []*blockmap.DiskReader
}

// StartPoint boots point p: every disk of the point is served by an
// in-process NBD export (read-only: the point is never written) and is
// the backing of a qcow2 overlay in opts.RunDir. opts.Disks and (when
// nil) opts.Config are filled from the point.
func StartPoint(ctx context.Context, repo *blockmap.Repo, p blockmap.Point, opts Options) (pm *PointMachine, err error) {
	if opts.Config == nil {
		cfg, ok, err := PointConfig(ctx, repo, p)
		if err != nil {
			return nil, err
		}
		if ok {
			opts.Config = cfg
		} else if opts.Firmware == "" {
			return nil, fmt.Errorf("point %s of %s: %w (an imported point?) and no firmware was given", p.ID, p.VM, ErrNoConfig)
		}
	}
	if err := os.MkdirAll(opts.RunDir, 0o700); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	pm = &PointMachine{cancel: cancel}
	defer func() {
		if err != nil {
			pm.close()
			if !opts.KeepOverlays {
				os.RemoveAll(opts.RunDir)
			}
		}
	}()
	opts.Disks = nil
	for i, d := range p.Disks {
		dr, err := repo.OpenDisk(ctx, p, d.Name)
		if err != nil {
			return pm, err
		}
		pm.readers = append(pm.readers, dr)
		exp, err := nbdserve.NewExport(dr, nbdserve.Options{Logger: opts.Logger})
		if err != nil {
			return pm, err
		}
		sock := DiskSocket(opts.RunDir, i)
		os.Remove(sock)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			return pm, fmt.Errorf("disk %s: %w", d.Name, err)
		}
		pm.wg.Add(1)
		go func() {
			defer pm.wg.Done()
			_ = exp.Serve(sctx, ln)
		}()
		opts.Disks = append(opts.Disks, Disk{Name: d.Name, Backing: "nbd+unix:///?socket=" + sock})
	}
	m, err := Start(ctx, opts)
	if err != nil {
		return pm, err
	}
	pm.Machine = m
	go func() {
		<-m.Exited()
		m.Stop()
		pm.close()
	}()
	return pm, nil
}

func (pm *PointMachine) close() {
	pm.once.Do(func() {
		pm.cancel()
		pm.wg.Wait()
		for _, r := range pm.readers {
			r.Close()
		}
	})
}

// Stop stops the machine, then the exports.
func (pm *PointMachine) Stop() error {
	err := pm.Machine.Stop()
	pm.close()
	return err
}

// ResultsDir is where the boot checks of a point are kept: beside the
// repository's points, never inside one: <repo>/bootchecks/<vm>/<point>.
func ResultsDir(repoDir, vm, point string) string {
	return filepath.Join(repoDir, "bootchecks", vm, point)
}

// Files of a boot check.
const (
	ResultFile     = "result.json"
	ScreenshotFile = "screenshot.png"
	SerialFile     = "serial.log"
)

// SaveResult writes result.json (and moves the screenshot and serial log
// given) into the point's results directory (0700, files 0600),
// replacing an earlier check's.
func SaveResult(repoDir, vm, point string, res Result, screenshot, serial string) error {
	dir := ResultsDir(repoDir, vm, point)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{filepath.Join(repoDir, "bootchecks"), filepath.Join(repoDir, "bootchecks", vm), dir} {
		_ = os.Chmod(d, 0o700)
	}
	res.Screenshot, res.SerialLog = "", ""
	if screenshot != "" {
		if err := moveFile(screenshot, filepath.Join(dir, ScreenshotFile)); err == nil {
			res.Screenshot = ScreenshotFile
		}
	}
	if serial != "" {
		if err := moveFile(serial, filepath.Join(dir, SerialFile)); err == nil {
			res.SerialLog = SerialFile
		}
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ResultFile+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, ResultFile))
}

// LoadResult reads the last boot check of a point; ok is false when there
// is none.
func LoadResult(repoDir, vm, point string) (Result, bool) {
	data, err := os.ReadFile(filepath.Join(ResultsDir(repoDir, vm, point), ResultFile))
	if err != nil {
		return Result{}, false
	}
	var r Result
	if json.Unmarshal(data, &r) != nil {
		return Result{}, false
	}
	return r, true
}

func moveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return os.Chmod(dst, 0o600)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return errors.Join(os.Rename(dst+".tmp", dst), os.Remove(src))
}

// DiskSocket is the unix socket in runDir that serves the i-th disk of the
// point (in the point's disk order) to StartPoint's machine: the backing
// of that disk's overlay, where `cairn nbd-export --socket` serves the
// disk again to reuse a kept overlay.
func DiskSocket(runDir string, i int) string {
	return filepath.Join(runDir, fmt.Sprintf("nbd%d.sock", i))
}
