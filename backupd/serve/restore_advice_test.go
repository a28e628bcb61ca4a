package serve

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// TestRestoreAPIAdvice: restore errors seen through the API name the
// request's fields, never the CLI's flags; a host and a cluster together
// are refused before any connection.
func TestRestoreAPIAdvice(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{fmt.Errorf("VM %q: %w", "app", vsphere.ErrVMExists), []string{`give "name" to restore beside it`, `"replace": true`}},
		{fmt.Errorf("disk scsi0-0: %w", backupd.ErrCBTCannotAnswer), []string{`"full": true`}},
		{&vsphere.PlacementError{Field: "datastore", Value: "ds9", Reason: "is not mounted on host esx1"}, []string{`give an existing "datastore"`}},
		{&vsphere.PlacementError{Field: "folder", Value: "f9", Reason: "not found in DC0"}, []string{`give an existing "folder"`}},
		{&vsphere.NetworkError{NIC: "Network adapter 1", Network: "VM Netwrk", Recorded: "VM Network"}, []string{`"networks": {"VM Network": "NEW"}`}},
		{fmt.Errorf("restore disk scsi0-0: hotadd: %w", backupd.ErrNoProxyVM), []string{`"proxy_vm"`, `"transports"`}},
	} {
		err := withAPIRestoreAdvice(tc.err)
		if !errors.Is(err, tc.err) || strings.Contains(err.Error(), "--") {
			t.Errorf("%v: the error is not kept, or names a CLI flag", err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: want %q", err, w)
			}
		}
	}
	other := errors.New("nbd server error EIO")
	if withAPIRestoreAdvice(other) != other {
		t.Errorf("advice added to %v", other)
	}
	err := RestoreRequest{VM: "app", Host: "esx1", Cluster: "c1"}.check()
	if err == nil || !strings.Contains(err.Error(), `"host" and "cluster"`) {
		t.Errorf("host and cluster both: %v", err)
	}
	err = RestoreRequest{VM: "app", ResourcePool: "c1/Resources/web", Cluster: "c1"}.check()
	if err == nil || !strings.Contains(err.Error(), `"resource_pool" and "cluster"`) {
		t.Errorf("resource_pool and cluster both: %v", err)
	}
	err = withAPIRestoreAdvice(&vsphere.PlacementError{Field: "resource_pool", Value: "web", Reason: "not found in DC0"})
	if !strings.Contains(err.Error(), `give an existing "resource_pool"`) {
		t.Errorf("resource pool advice: %v", err)
	}
}
