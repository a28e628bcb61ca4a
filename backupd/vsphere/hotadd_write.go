package vsphere

import (
	"context"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// AttachForWrite hot-adds an existing disk file (a disk of a VM being
// restored) to the proxy in persistent mode, so that what the proxy
// writes to the device lands in the file.
func (p *Proxy) AttachForWrite(ctx context.Context, fileName string) (HotAdded, error) {
	return p.attach(ctx, fileName, types.VirtualDiskModePersistent)
}

// DetachFolder detaches from the proxy every disk whose file lives in the
// datastore folder of vmxPath ("[ds] web/web.vmx"): the disks a killed
// restore of that VM left attached. It returns their file names.
func (p *Proxy) DetachFolder(ctx context.Context, vmxPath string) ([]string, error) {
	folder := dsFolder(vmxPath)
	if folder == "" {
		return nil, nil
	}
	vm, err := p.vm.conn.LoadVM(ctx, p.vm.Ref)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", p.vm.Name, err)
	}
	var out []string
	for _, d := range vm.Disks {
		if strings.HasPrefix(d.FileName, folder+"/") {
			if err := p.Detach(d.Key); err != nil {
				return out, err
			}
			out = append(out, d.FileName)
		}
	}
	return out, nil
}
