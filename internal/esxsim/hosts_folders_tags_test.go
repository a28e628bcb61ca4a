package esxsim_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

func TestHostsFoldersTagsAndTemplates(t *testing.T) {
	sim, c := startWithClient(t, esxsim.Options{Hosts: 3, VMs: []esxsim.VMSpec{
		{Name: "a", Disks: []esxsim.DiskSpec{{Size: 1 << 20}}},
		{Name: "b", Host: 2, Folder: "prod/web", Tags: []string{"env:prod", "tier:web"}, Disks: []esxsim.DiskSpec{{Size: 1 << 20}}},
		{Name: "c", Host: 1, Folder: "/prod/", Tags: []string{"env:prod"}, Disks: []esxsim.DiskSpec{{Size: 1 << 20}}},
		{Name: "gold", Template: true, Disks: []esxsim.DiskSpec{{Size: 1 << 20}}},
	}})
	ctx := context.Background()
	if want := []string{"DC0_H0", "DC0_H1", "DC0_H2"}; !slices.Equal(sim.Hosts, want) || sim.Host != "DC0_H0" {
		t.Fatalf("hosts %v (Host %q), want %v", sim.Hosts, sim.Host, want)
	}
	finder := find.NewFinder(c.Client, false)
	for name, want := range map[string]struct{ path, host string }{
		"a": {"/DC0/vm/a", "DC0_H0"},
		"b": {"/DC0/vm/prod/web/b", "DC0_H2"},
		"c": {"/DC0/vm/prod/c", "DC0_H1"},
	} {
		vm, err := finder.VirtualMachine(ctx, want.path)
		if err != nil {
			t.Fatalf("vm %s not at %s: %v", name, want.path, err)
		}
		var m mo.VirtualMachine
		if err := vm.Properties(ctx, vm.Reference(), []string{"runtime.host", "datastore"}, &m); err != nil {
			t.Fatal(err)
		}
		var h mo.HostSystem
		if err := vm.Properties(ctx, *m.Runtime.Host, []string{"name", "datastore"}, &h); err != nil {
			t.Fatal(err)
		}
		if h.Name != want.host {
			t.Errorf("vm %s runs on %s, want %s", name, h.Name, want.host)
		}
		if len(h.Datastore) != 1 || len(m.Datastore) != 1 || h.Datastore[0] != m.Datastore[0] {
			t.Errorf("vm %s: datastores %v, its host's %v: want the one shared datastore", name, m.Datastore, h.Datastore)
		}
	}
	var gold mo.VirtualMachine
	ref, _ := sim.VMRef("gold")
	if err := c.PropertyCollector().RetrieveOne(ctx, ref, []string{"config.template", "runtime.powerState"}, &gold); err != nil {
		t.Fatal(err)
	}
	if !gold.Config.Template || gold.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		t.Errorf("gold: template %v, power %s", gold.Config.Template, gold.Runtime.PowerState)
	}

	if err := sim.TagVM(ctx, "a", "env:test", "tier:web"); err != nil {
		t.Fatal(err)
	}
	if err := sim.TagVM(ctx, "a", "no-colon"); err == nil {
		t.Error("TagVM accepted a tag without a category")
	}
	m := tags.NewManager(restLogin(t, sim))
	cats, err := m.GetCategories(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var catNames []string
	for _, c := range cats {
		catNames = append(catNames, c.Name)
	}
	slices.Sort(catNames)
	if !slices.Equal(catNames, []string{"env", "tier"}) {
		t.Errorf("categories %v, want [env tier]", catNames)
	}
	attached := map[string][]string{}
	for _, name := range []string{"a", "b", "c", "gold"} {
		ref, _ := sim.VMRef(name)
		ts, err := m.GetAttachedTags(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range ts {
			attached[name] = append(attached[name], tag.Name)
		}
		slices.Sort(attached[name])
	}
	want := map[string][]string{"a": {"test", "web"}, "b": {"prod", "web"}, "c": {"prod"}}
	for name, w := range want {
		if !slices.Equal(attached[name], w) {
			t.Errorf("vm %s carries %v, want %v", name, attached[name], w)
		}
	}
	if len(attached["gold"]) != 0 {
		t.Errorf("gold carries %v", attached["gold"])
	}
	all, err := m.GetTags(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 { // env:prod, env:test, tier:web: created once each
		t.Errorf("%d tags exist, want 3: %+v", len(all), all)
	}
}

// restLogin logs a vAPI session into sim, logged out when the test ends.
func restLogin(t *testing.T, sim *esxsim.Sim) *rest.Client {
	t.Helper()
	ctx := context.Background()
	c := esxsimtest.Client(t, sim)
	rc := rest.NewClient(c.Client)
	if err := rc.Login(ctx, url.UserPassword("nobody", "wrong")); err == nil {
		t.Error("vAPI login with wrong credentials succeeded")
	}
	if err := rc.Login(ctx, url.UserPassword(sim.User, sim.Password)); err != nil {
		t.Fatalf("vAPI login: %v", err)
	}
	t.Cleanup(func() { _ = rc.Logout(context.Background()) })
	return rc
}

func TestHostsFoldersTagsOptionErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		opts esxsim.Options
		want string
	}{
		{esxsim.Options{Hosts: 2, VMs: []esxsim.VMSpec{{Name: "x", Host: 2}}}, "host index 2 out of range"},
		{esxsim.Options{VMs: []esxsim.VMSpec{{Name: "x", Host: -1}}}, "host index -1 out of range"},
		{esxsim.Options{VMs: []esxsim.VMSpec{{Name: "x", Folder: "a//b"}}}, `invalid folder "a//b"`},
		{esxsim.Options{VMs: []esxsim.VMSpec{{Name: "x", Folder: "a/../b"}}}, `invalid folder`},
		{esxsim.Options{VMs: []esxsim.VMSpec{{Name: "x", Tags: []string{"prod"}}}}, `invalid tag "prod"`},
		{esxsim.Options{VMs: []esxsim.VMSpec{{Name: "x", Tags: []string{":prod"}}}}, `invalid tag ":prod"`},
	} {
		tc.opts.DatastoreDir = dir
		sim, err := esxsim.Start(context.Background(), tc.opts)
		if err == nil {
			sim.Close()
			t.Errorf("%+v: started", tc.opts.VMs)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %q, want it to contain %q", tc.opts.VMs, err, tc.want)
		}
	}
}
