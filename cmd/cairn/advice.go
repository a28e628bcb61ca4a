package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
)

// hintFor is the one command that fixes a library error, when there is
// one; the CLI prints it on the error's own line (errorLine), so that these
// errors stay one line.
func hintFor(err error) string {
	var missing *blockmap.RepoMissingError
	var noPoint *blockmap.PointNotFoundError
	var mounted *fusefs.MountedError
	var locked *blockmap.VMLockedError
	var onRemote *remotePointError
	var notLocal *vsphere.DatastoreNotLocalError
	var untrusted *vsphere.UntrustedCertError
	var noBitmap *source.NoBitmapError
	switch {
	case errors.As(err, &untrusted):
		return fmt.Sprintf("if %s is the thumbprint your vCenter shows, pin it with --thumbprint %s", untrusted.Thumbprint, untrusted.Thumbprint)
	case errors.Is(err, vsphere.ErrNoCredentials):
		return fmt.Sprintf("give --credentials FILE (user and password on two lines, mode 0600) or set %s and %s", vsphere.EnvUser, vsphere.EnvPassword)
	case errors.Is(err, vsphere.ErrNoURL):
		return "give --vcenter https://HOST/sdk"
	case errors.Is(err, backupd.ErrNoThumbprint):
		return "give --thumbprint"
	case errors.Is(err, vmconfig.ErrNewer):
		return "use the cairn that recorded the point (or a newer one); cairn restore vm also takes --vm-config FILE in its place"
	case errors.Is(err, boot.ErrNoConfig):
		return "give --firmware bios or efi, or import the point with --vm-config"
	case errors.Is(err, fusefs.ErrBusy):
		return "close the files open there, or detach it anyway with --lazy"
	case errors.Is(err, source.ErrBitmapNotNBD):
		return "use --changed for a file, or serve it over NBD"
	case errors.As(err, &noBitmap):
		return fmt.Sprintf("start qemu-nbd with -B %s, or drop --dirty-bitmap for a read compared by hash", noBitmap.Bitmap)
	case errors.Is(err, backupd.ErrNoProxyVM):
		return "give --proxy-vm NAME (the appliance's own VM), or leave hotadd out of --transport"
	case errors.As(err, &notLocal):
		return fmt.Sprintf("mount it on this machine and give --datastore-dir %s=DIR, or use another --transport", notLocal.Datastore)
	case errors.As(err, &onRemote) && remotePointHint(onRemote) != "":
		return remotePointHint(onRemote)
	case errors.As(err, &missing):
		switch {
		case missing.Dir == "":
			return "use --repo DIR or set CAIRN_REPO"
		case missing.Inside != "":
			return fmt.Sprintf("%s is inside the repository %s: use --repo %s", missing.Dir, missing.Inside, missing.Inside)
		case missing.File:
			return "give --repo the repository's directory"
		case missing.Exists:
			return fmt.Sprintf("create one with `cairn --repo %s init`", missing.Dir)
		}
		return fmt.Sprintf("create it with `cairn --repo %s init`", missing.Dir)
	case errors.As(err, &noPoint):
		if noPoint.Ref == "" {
			return "see `cairn points`"
		}
		return fmt.Sprintf("give an id from `cairn points --vm %s`, a generation number, or latest", noPoint.VM)
	case errors.As(err, &mounted):
		if mounted.Stale {
			return fmt.Sprintf("remove it with `cairn umount --lazy %s`", mounted.Dir)
		}
		return fmt.Sprintf("unmount it first with `cairn umount %s`", mounted.Dir)
	case errors.As(err, &locked):
		return vmLockedHint(locked.Holder)
	case isNoSpace(err):
		return noSpaceHint(err)
	}
	return ""
}

// vmLockedHint is what to do about a VM another process holds: wait, or
// stop that process (its lock ends with it; a killed backup's snapshot is
// removed by the VM's next backup).
func vmLockedHint(h blockmap.VMLockHolder) string {
	host, _ := os.Hostname()
	switch {
	case h.PID == 0:
		return "wait for it to end and run the command again"
	case h.Host != "" && h.Host != host:
		return fmt.Sprintf("wait for it to end, or stop pid %d on host %s; the lock ends with that process", h.PID, h.Host)
	}
	return fmt.Sprintf("wait for it to end, or stop it with `kill %d`; the lock ends with that process", h.PID)
}

// errorLine is an error as the CLI prints it: with its hint, if any.
func errorLine(err error) string {
	if h := hintFor(err); h != "" {
		return fmt.Sprintf("%v (%s)", err, h)
	}
	return err.Error()
}

// adviceFor is what the CLI adds to a library error: what to do about it.
func adviceFor(err error) string {
	switch {
	case errors.Is(err, blockmap.ErrIndexDamaged):
		return "the repository index is damaged and nothing was read from the damaged part: run `cairn verify` to see which points are affected, and restore the repository from an offsite copy (`cairn verify` names bad blocks and block maps)"
	case isUnknownFlag(err, "remote"):
		// partitions, boot, verify-boot, nbd-export, restore disk, ...
		return "this command reads the local repository only: pull the point first (cairn pull --remote NAME --vm VM --point ID), or read it through cairn mount --remote NAME DIR (disks/*.img, fs/)"
	case errors.Is(err, blockmap.ErrNotReleased):
		return "the points are deleted, but their space stays in use until running mounts can be told: make <repo>/catalog.seq writable again (free space, lift a quota or `chattr -i`); the next prune, forget or backup of the VM then releases it"
	}
	return ""
}

// deletionResult prints what a prune or forget deleted when it deleted
// points but could not release their space, and passes the error on.
func deletionResult(print func() error, err error) error {
	if errors.Is(err, blockmap.ErrNotReleased) {
		if perr := print(); perr != nil {
			return perr
		}
		return afterJSON(true, err) // its result (JSON too) is printed
	}
	return err
}
