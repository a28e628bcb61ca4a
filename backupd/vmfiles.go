package backupd

import (
	"context"
	"fmt"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// Limits of the VM files a backup downloads from the datastore.
const (
	maxVMXSize   = 1 << 20
	maxNVRAMSize = blockmap.MaxAttachmentSize
)

// attachVMFiles records the VM's configuration (vmconfig.AttachmentConfig)
// and its .vmx and .nvram files, downloaded from the datastore, with the
// point. The configuration is required; a file that cannot be downloaded
// is logged and left out (the point's attachment list shows what is there).
func (j *vmJob) attachVMFiles(ctx context.Context, sess *blockmap.Session) error {
	cfg := vsphere.VMConfig(j.vm.Name, j.vm.Config)
	markSkipped(&cfg, j.skipped)
	// Where the VM lives, for a restore to the original place; a point
	// without it restores to the default place, so a failure here is
	// only logged.
	if pl, err := j.hv.VMPlacement(ctx, j.vm); err == nil {
		cfg.Placement = pl
	} else if ctx.Err() != nil {
		return ctx.Err()
	} else {
		j.log.Warn("VM placement not recorded with the point: a restore will use the default placement", "vm", j.vm.Name, "error", err)
	}
	data, err := cfg.Marshal()
	if err != nil {
		return fmt.Errorf("VM configuration of %s: %w", j.vm.Name, err)
	}
	if err := sess.Attach(vmconfig.AttachmentConfig, data); err != nil {
		return fmt.Errorf("VM configuration of %s: %w", j.vm.Name, err)
	}
	files := []struct {
		path, name string
		limit      int64
	}{
		{cfg.VMXPath, vmconfig.VMXAttachment(j.vm.Name), maxVMXSize},
		{cfg.NVRAMPath, vmconfig.NVRAMAttachment(j.vm.Name), maxNVRAMSize},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		data, err := j.hv.DownloadFile(ctx, j.vm, f.path, f.limit)
		if err == nil && f.name == vmconfig.VMXAttachment(j.vm.Name) {
			// the .vmx holds extraConfig too: the same secrets go
			data, _ = vmconfig.FilterVMX(data)
		}
		if err == nil {
			err = sess.Attach(f.name, data)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			j.log.Warn("VM file not kept with the point", "vm", j.vm.Name, "file", f.path, "error", err)
			continue
		}
		j.log.Info("VM file kept with the point", "vm", j.vm.Name, "file", f.path, "bytes", len(data))
	}
	return nil
}
