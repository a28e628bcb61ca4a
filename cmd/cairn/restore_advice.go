package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// labNBDCommand writes a datastore's flat file directly: for a datastore
// mounted on this machine (NFS, --datastore-dir, the lab's simulator).
const labNBDCommand = "nbdkit -t 1 -U {socket} -f file {disk_local_path}"

// restoreAdvice is what the CLI adds to a failed restore's error when the
// fix is a flag: the default NBD command needs nbdkit's VDDK plugin, which
// a machine without VMware's VDDK (a test machine, the lab) lacks.
func restoreAdvice(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, vsphere.ErrVMExists) {
		return "give --name NEW to restore beside it, or --replace to overwrite it"
	}
	if errors.Is(err, backupd.ErrCBTCannotAnswer) {
		return "use --full to overwrite every disk whole"
	}
	if errors.Is(err, backupd.ErrNBDReadOnly) {
		return "remove --readonly / -r from --nbd-command (a restore writes through it)"
	}
	var ne *vsphere.NetworkError
	if errors.As(err, &ne) {
		return fmt.Sprintf("map it to an existing network with --network %s=NEW", ne.Recorded)
	}
	if errors.Is(err, vsphere.ErrNoFreeUnit) {
		return "give another --controller, or add a controller to the VM in vSphere"
	}
	var pe *vsphere.PlacementError
	if errors.As(err, &pe) {
		switch pe.Field {
		case "folder":
			return "create the folder in vSphere, or give an existing --folder (an inventory path, or a path below the datacenter's VM folder)"
		case "datastore":
			return "give --datastore NAME of a datastore mounted on the host (or leave it out for the host's first)"
		case "resource_pool":
			return "give --resource-pool of an existing pool (an inventory path, or a path below the datacenter's host folder: CLUSTER/Resources/POOL), or leave it out"
		default:
			return fmt.Sprintf("give --%s NAME of an existing %s (or leave it out)", pe.Field, map[string]string{"host": "ESXi host", "cluster": "cluster"}[pe.Field])
		}
	}
	if vsphere.IsNoDiskSpace(err) {
		return "the datastore has no room for the disks: give --datastore NAME of one that has, or --disk-provisioning thin " +
			"(thick and eager disks take their whole capacity when they are created)"
	}
	msg := err.Error()
	if strings.Contains(msg, "cannot open plugin 'vddk'") || strings.Contains(msg, "nbdkit-vddk-plugin") {
		return fmt.Sprintf("nbdkit's vddk plugin (VMware's VDDK) is not installed on this machine: install it, or, where the datastore is mounted here "+
			"(an NFS datastore with --datastore-dir NAME=DIR, or cairn lab), write the disk files directly with "+
			"--transport nbd --nbd-command '%s' (docs/restore.md, Write transports)", labNBDCommand)
	}
	return ""
}

// withRestoreAdvice appends restoreAdvice to err, if any.
func withRestoreAdvice(err error) error {
	if a := restoreAdvice(err); a != "" {
		return fmt.Errorf("%w\n%s", err, a)
	}
	return err
}
