package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// TestRestoreAdviceVDDK: a restore whose default NBD command fails for
// want of nbdkit's vddk plugin (what nbdkit prints then) says how to write
// a locally mounted datastore instead; other errors get no advice.
func TestRestoreAdviceVDDK(t *testing.T) {
	nbdkit := errors.New("NBD server nbdkit exited before serving (exit status 1): nbdkit: error: cannot open plugin 'vddk': " +
		"/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-vddk-plugin.so: cannot open shared object file: No such file or directory")
	err := withRestoreAdvice(fmt.Errorf("restore of web point 1: restore disk scsi0-0: no write transport worked: nbd: %w", nbdkit))
	if !errors.Is(err, nbdkit) || !strings.Contains(err.Error(), "--nbd-command '"+labNBDCommand+"'") || !strings.Contains(err.Error(), "--datastore-dir") {
		t.Errorf("advice missing: %v", err)
	}
	other := errors.New("nbd server error EIO")
	if got := withRestoreAdvice(other); got != other {
		t.Errorf("advice added to %v: %v", other, got)
	}
}

// TestRestoreAdviceFlags: the library's typed errors get the CLI's flags
// as advice (the library itself names no flag).
func TestRestoreAdviceFlags(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("disk scsi0-0: no write transport worked: hotadd: %w", backupd.ErrNoProxyVM), "give --proxy-vm NAME"},
		{fmt.Errorf("disk scsi0-0: %w", &vsphere.DatastoreNotLocalError{Datastore: "LocalDS_0"}), "--datastore-dir LocalDS_0=DIR"},
	} {
		if got := errorLine(tc.err); !strings.Contains(got, tc.want) {
			t.Errorf("%v: want hint %q in %q", tc.err, tc.want, got)
		}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("VM %q: %w", "web", vsphere.ErrVMExists), "--name NEW to restore beside it, or --replace"},
		{fmt.Errorf("disk scsi0-0: %w", backupd.ErrCBTCannotAnswer), "use --full"},
		{&vsphere.PlacementError{Field: "host", Value: "esx9", Reason: "is no ESXi host of DC0"}, "--host NAME of an existing ESXi host"},
		{&vsphere.PlacementError{Field: "cluster", Value: "c9", Reason: "not found"}, "--cluster NAME of an existing cluster"},
		{&vsphere.PlacementError{Field: "datastore", Value: "d9", Reason: "is not mounted"}, "--datastore NAME"},
		{&vsphere.PlacementError{Field: "folder", Value: "f9", Reason: "not found"}, "existing --folder"},
		{fmt.Errorf("nbd: disk scsi0-0: %w", backupd.ErrNBDReadOnly), "remove --readonly / -r from --nbd-command"},
		{&vsphere.NetworkError{NIC: "Network adapter 1", Network: "VM Netwrk", Recorded: "VM Network"}, "--network VM Network=NEW"},
		{fmt.Errorf("VM web, controller scsi1: %w", vsphere.ErrNoFreeUnit), "another --controller"},
	} {
		err := withRestoreAdvice(fmt.Errorf("restore of web point 1: %w", tc.err))
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want advice %q", err, tc.want)
		}
	}
}
