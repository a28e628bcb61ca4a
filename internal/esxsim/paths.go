package esxsim

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// localDescriptor maps "[datastore1] vm1/vm1.vmdk" to the descriptor's local path.
func (s *Sim) localDescriptor(dsPath string) (string, error) {
	var p object.DatastorePath
	if !p.FromString(dsPath) || p.Path == "" {
		return "", fmt.Errorf("datastore path %q is not on a datastore of the simulator: %w", dsPath, ErrNotFound)
	}
	dir, ok := s.dsDirs[p.Datastore]
	if !ok {
		return "", fmt.Errorf("datastore path %q is not on a datastore of the simulator: %w", dsPath, ErrNotFound)
	}
	rel := filepath.Clean(filepath.FromSlash(p.Path))
	if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("datastore path %q leaves the datastore", dsPath)
	}
	return filepath.Join(dir, rel), nil
}

// LocalPath maps a disk's datastore path ("[datastore1] vm1/vm1.vmdk", as
// in a backing's fileName) to the local path of its raw flat extent
// (".../vm1/vm1-flat.vmdk"), which qemu-nbd -f raw or nbdkit file can serve.
func (s *Sim) LocalPath(dsPath string) (string, error) {
	desc, err := s.localDescriptor(dsPath)
	if err != nil {
		return "", err
	}
	return flatName(desc), nil
}

// DeviceLocalPath returns the local flat file behind the disk with device
// key on the named VM, as its config shows now: for a hot-added disk this
// is the file a proxy would see as /dev/sdX.
func (s *Sim) DeviceLocalPath(vmName string, deviceKey int32) (string, error) {
	ref, err := s.VMRef(vmName)
	if err != nil {
		return "", err
	}
	var fileName string
	err = s.withVM(ref, func(_ *simulator.Context, vm *simulator.VirtualMachine) {
		for _, dev := range vm.Config.Hardware.Device {
			if dev.GetVirtualDevice().Key != deviceKey {
				continue
			}
			if b, ok := dev.GetVirtualDevice().Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
				fileName = b.GetVirtualDeviceFileBackingInfo().FileName
			}
		}
	})
	if err != nil {
		return "", err
	}
	if fileName == "" {
		return "", fmt.Errorf("vm %q has no file-backed device %d: %w", vmName, deviceKey, ErrNotFound)
	}
	return s.LocalPath(fileName)
}
