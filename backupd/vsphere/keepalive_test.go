package vsphere_test

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// TestKeepAliveHoldsSession makes the simulated vCenter drop sessions idle
// for 2 s (config.vmacore.soap.sessionTimeout, as on a real vCenter
// where it is 30 minutes) and stays idle for longer: a connection with
// keepalive still works, one without has lost its session.
func TestKeepAliveHoldsSession(t *testing.T) {
	sim := esxsimtest.Start(t, esxsim.Options{NumVMs: 1, DisksPerVM: 1, DiskSize: 1 << 20})
	ctx := context.Background()
	admin := connect(t, sim)
	om := object.NewOptionManager(admin.Client, *admin.Client.ServiceContent.Setting)
	if err := om.Update(ctx, []types.BaseOptionValue{&types.OptionValue{Key: "config.vmacore.soap.sessionTimeout", Value: "2s"}}); err != nil {
		t.Fatalf("set the session timeout: %v", err)
	}
	dial := func(keepAlive time.Duration) *vsphere.Conn {
		c, err := vsphere.Connect(ctx, vsphere.ConnectOptions{
			URL: sim.URL.String(), Credentials: vsphere.Credentials{User: sim.User, Password: sim.Password}, Thumbprint: sim.Thumbprint,
			KeepAlive: keepAlive,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	kept, idle := dial(200*time.Millisecond), dial(time.Hour)
	time.Sleep(5 * time.Second)
	if _, err := kept.FindVM(ctx, "vm1"); err != nil {
		t.Errorf("with keepalive, after 5 s idle: %v", err)
	}
	if _, err := idle.FindVM(ctx, "vm1"); err == nil {
		t.Errorf("without keepalive the session outlived the 2 s timeout: the test shows nothing")
	}
}
