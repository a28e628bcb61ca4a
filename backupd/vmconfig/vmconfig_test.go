package vmconfig

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const good = `{"version":1,"name":"web","firmware":"efi","secure_boot":true,"cpus":4,"cores_per_socket":2,"memory_mb":2048,
"controllers":[{"key":1000,"type":"pvscsi","bus":0}],
"disks":[{"name":"scsi0-0","key":2000,"controller_key":1000,"controller_type":"pvscsi","bus":0,"unit":0,"capacity":1048576,"provisioning":"thin"}],
"nics":[{"key":4000,"adapter_type":"vmxnet3","mac":"00:50:56:aa:bb:cc","network":"VM Network","start_connected":true}]}`

func TestParse(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := c.Disk("scsi0-0"); !ok || d.Capacity != 1<<20 {
		t.Fatalf("disk: %+v", d)
	}
	for _, tc := range []struct{ name, from, to, field string }{
		{"bad firmware", `"firmware":"efi"`, `"firmware":"uefi"`, "firmware"},
		{"secure boot on bios", `"firmware":"efi"`, `"firmware":"bios"`, "secure_boot"},
		{"no cpus", `"cpus":4`, `"cpus":0`, "cpus"},
		{"cores", `"cores_per_socket":2`, `"cores_per_socket":3`, "cores_per_socket"},
		{"memory type", `"memory_mb":2048`, `"memory_mb":"2G"`, "memory_mb"},
		{"unknown field", `"cpus":4`, `"cpus":4,"cpu":4`, "cpu"},
		{"controller type", `"type":"pvscsi"`, `"type":"virtio"`, "controllers[0].type"},
		{"disk controller", `"controller_key":1000`, `"controller_key":7`, "disks[0].controller_key"},
		{"provisioning", `"provisioning":"thin"`, `"provisioning":"sparse"`, "disks[0].provisioning"},
		{"mac", `"mac":"00:50:56:aa:bb:cc"`, `"mac":"0050.56aa.bbcc"`, "nics[0].mac"},
		{"nic type", `"adapter_type":"vmxnet3"`, `"adapter_type":"virtio-net"`, "nics[0].adapter_type"},
		{"name", `"name":"web"`, `"name":""`, "name"},
		{"version", `"version":1`, `"version":7`, "version"},
		{"secret", `"cpus":4`, `"cpus":4,"extra_config":{"guestinfo.pw":"x"}`, "extra_config.guestinfo.pw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(good, tc.from, tc.to, 1)
			if doc == good {
				t.Fatal("replacement did not apply")
			}
			_, err := Parse([]byte(doc))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want a FieldError on %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("message %q does not name %s", err, tc.field)
			}
		})
	}
	for _, bad := range []string{`{`, `[]`, good + `{}`, `not json`} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%.20q): %v", bad, err)
		}
	}
}

func TestSecretKey(t *testing.T) {
	for key, want := range map[string]bool{
		"guestinfo.userdata": true, "guestinfo.metadata.encoding": true, "answer.msg.password": true,
		"vmware.tools.authToken": true, "vmx.sshPublicKey": true, "cloud.init.api_key": true, "my.secret": true,
		"svga.present": false, "disk.EnableUUID": false, "keyboard.typematicMinDelay": false,
		"tools.syncTime": false, "ethernet0.pciSlotNumber": false, "isolation.tools.hgfs.disable": false,
	} {
		if got := SecretKey(key); got != want {
			t.Errorf("SecretKey(%q) = %v, want %v", key, got, want)
		}
	}
	kept, dropped := FilterExtraConfig(map[string]string{"a.b": "1", "guestinfo.x": "2", "x.password": "3"})
	if len(kept) != 1 || !slices.Equal(dropped, []string{"guestinfo.x", "x.password"}) {
		t.Fatalf("kept %v dropped %v", kept, dropped)
	}
	vmx, drop := FilterVMX([]byte("a = \"1\"\nguestinfo.pw = \"s\"\n# password = comment\nb = \"2\""))
	if string(vmx) != "a = \"1\"\n# password = comment\nb = \"2\"" || !slices.Equal(drop, []string{"guestinfo.pw"}) {
		t.Fatalf("FilterVMX: %q %v", vmx, drop)
	}
}

// TestParsePlacement: a document without placement (points made before it
// was recorded, imports) parses with none; one with it keeps every field.
func TestParsePlacement(t *testing.T) {
	old, err := Parse([]byte(good))
	if err != nil || old.Placement != nil || old.Disks[0].Datastore != "" {
		t.Fatalf("old document: %+v %v", old, err)
	}
	doc := strings.Replace(good, `"memory_mb":2048,`, `"memory_mb":2048,"placement":{"datacenter":"DC0","folder":"/DC0/vm/prod",`+
		`"resource_pool":"/DC0/host/C1/Resources/web","cluster":"C1","host":"esx1","datastore":"ds1"},`, 1)
	doc = strings.Replace(doc, `"provisioning":"thin"`, `"provisioning":"thin","datastore":"ds2"`, 1)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := Placement{Datacenter: "DC0", Folder: "/DC0/vm/prod", ResourcePool: "/DC0/host/C1/Resources/web", Cluster: "C1", Host: "esx1", Datastore: "ds1"}
	if c.Placement == nil || *c.Placement != want || c.Disks[0].Datastore != "ds2" {
		t.Fatalf("placement %+v disk %+v", c.Placement, c.Disks[0])
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil || *back.Placement != want || back.Disks[0].Datastore != "ds2" {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if out, _ := old.Marshal(); strings.Contains(string(out), "placement") || strings.Contains(string(out), `"datastore"`) {
		t.Errorf("a configuration without placement writes %s", out)
	}
}
