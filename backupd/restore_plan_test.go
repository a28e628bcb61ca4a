package backupd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// restoreCase is one restore against the in-memory hypervisor, after a
// backup of VM "web" (disks scsi0-0 of 2 MiB and scsi0-1 of 1 MiB, each
// half data, half holes) and change.
type restoreCase struct {
	name   string
	change func(h *memHV, vm *memVM, dir string)
	req    func(p blockmap.Point) RestoreRequest
	opts   func(o *RestoreOptions, h *memHV)
	// wantErr is matched with errors.Is, errText against the message.
	wantErr error
	errText string
	// calls must appear in this order among the hypervisor's; no call
	// may start with one of forbid.
	calls  []string
	forbid []string
	// vm is the VM whose disks must equal the point afterwards ("" when
	// none), except the areas in keep (checked by check).
	vm string
	// written is the data bytes that must reach the target disks (-1:
	// the point's data bytes), per the NBD server's log and the result.
	written int64
	// overwrote: the restore failed after writing to web's disks (they
	// are not checked unchanged).
	overwrote bool
	check     func(t *testing.T, h *memHV, res *RestoreResult, err error)
	// job checks the restore's final record in the job log.
	job func(t *testing.T, rec JobRecord)
}

// TestRestorePlan drives whole restores against the in-memory
// hypervisor, the disks written through a real NBD server (nbdkit, its
// log filter counting the bytes that reached the target files), and
// checks the calls made, the result and the target disks' bytes.
func TestRestorePlan(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	const mib = 1 << 20
	newVM := func(name string) func(p blockmap.Point) RestoreRequest {
		return func(p blockmap.Point) RestoreRequest {
			return RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: name}}
		}
	}
	rollback := func(full bool) func(p blockmap.Point) RestoreRequest {
		return func(p blockmap.Point) RestoreRequest {
			return RestoreRequest{Point: p, InPlace: true, Full: full, Create: vsphere.CreateSpec{Name: "web"}}
		}
	}
	writes := []string{"create", "destroy", "rename", "power-on=", "add-disk", "remove-disk", "attach"}
	var warnings bytes.Buffer // the log of the case that sets it as its Logger
	cases := []restoreCase{
		{
			name: "new VM, new identity, network mapped, thick",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, PowerOn: true, Create: vsphere.CreateSpec{Name: "web2", Provisioning: "thick",
					Networks: map[string]string{"VM Network": "lab"}}}
			},
			calls: []string{"incomplete", "lookup web2", "create web2", "finish web2", "power-on=true web2"},
			vm:    "web2", written: -1,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				vm := h.vms["web2"]
				if vm.uuid == h.vms["web"].uuid || vm.mac == h.vms["web"].mac {
					t.Errorf("identity kept: uuid %s mac %s", vm.uuid, vm.mac)
				}
				if vm.network != "lab" || vm.cpus != 2 || !vm.poweredOn || vm.marker != "" {
					t.Errorf("network %q cpus %d on %v marker %q", vm.network, vm.cpus, vm.poweredOn, vm.marker)
				}
				for _, d := range vm.disks {
					if d.prov != "thick" {
						t.Errorf("disk %s provisioned %q", d.name, d.prov)
					}
				}
				if res.Mode != "new" || res.Disks[0].ZeroBytes != 0 {
					t.Errorf("mode %s, zero bytes %d (a new disk needs none)", res.Mode, res.Disks[0].ZeroBytes)
				}
			},
		},
		{
			name: "a network mapping of no recorded network is refused",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "web2", Networks: map[string]string{"VM Netwrok": "lab"}}}
			},
			wantErr: ErrNetworkNotInConfig, errText: `"VM Network"`,
			forbid: writes, written: 0,
		},
		{
			name: "new VM, identity kept",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "web2", KeepIdentity: true}}
			},
			calls: []string{"create web2", "finish web2"}, forbid: []string{"power-on="},
			vm: "web2", written: -1,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				vm, orig := h.vms["web2"], h.vms["web"]
				if vm.uuid != orig.uuid || vm.mac != orig.mac || vm.network != orig.network {
					t.Errorf("identity not kept: uuid %s mac %s network %s", vm.uuid, vm.mac, vm.network)
				}
			},
		},
		{
			name:    "name exists without --replace",
			change:  func(h *memHV, vm *memVM, _ string) { vm.poweredOn = true },
			req:     newVM("web"),
			wantErr: vsphere.ErrVMExists, errText: `VM "web"`,
			calls: []string{"lookup web"}, forbid: append(writes, "power-on=false"),
			written: 0,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				if !h.vms["web"].poweredOn {
					t.Error("the existing VM was powered off")
				}
			},
		},
		{
			name: "--replace: powered off, disks overwritten",
			change: func(h *memHV, vm *memVM, _ string) {
				vm.poweredOn = true
				vm.disk("scsi0-0").write(1536<<10, bytes.Repeat([]byte{0xaa}, 8192)) // in a hole of the point
				vm.disk("scsi0-1").write(0, bytes.Repeat([]byte{0xbb}, 4096))
			},
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Replace: true, Create: vsphere.CreateSpec{Name: "web"}}
			},
			calls: []string{"lookup web", "power-on=false web"}, forbid: []string{"create", "destroy", "changed-base"},
			vm: "web", written: -1,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				if res.Mode != "replace" || h.vms["web"].poweredOn {
					t.Errorf("mode %s, powered on %v", res.Mode, h.vms["web"].poweredOn)
				}
				var zero int64
				for _, d := range res.Disks {
					zero += d.ZeroBytes
				}
				if zero != 1536<<10 { // the holes: half of each disk
					t.Errorf("%d bytes zeroed, want the point's holes (%d)", zero, 1536<<10)
				}
			},
		},
		{
			name: "--replace, a write fails: the error says the VM stays off",
			change: func(h *memHV, vm *memVM, dir string) {
				vm.poweredOn = true
				os.WriteFile(filepath.Join(dir, "scsi0-1.fail"), nil, 0o644)
			},
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Replace: true, Create: vsphere.CreateSpec{Name: "web"}}
			},
			errText: `VM web was powered off to be replaced and stays off`,
			calls:   []string{"lookup web", "power-on=false web"}, forbid: []string{"create", "destroy", "power-on=true"},
			written: 1 << 20, overwrote: true,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				var re *RestoreError
				if !errors.As(err, &re) || re.PoweredOff != "web" || h.vms["web"].poweredOn {
					t.Errorf("error %#v, powered on %v; want a RestoreError naming web, powered off", err, h.vms["web"].poweredOn)
				}
			},
			job: func(t *testing.T, rec JobRecord) {
				if rec.State != JobFailed || !strings.Contains(rec.Error, "was powered off to be replaced and stays off") {
					t.Errorf("job record %s: %q, want the error saying the VM stays off", rec.State, rec.Error)
				}
			},
		},
		{
			name: "--replace through the default transports: nfc skipped without a warning",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Replace: true, Create: vsphere.CreateSpec{Name: "web"}}
			},
			opts: func(o *RestoreOptions, h *memHV) {
				o.Transports = []string{WriteTransportNFC, WriteTransportNBD}
				warnings.Reset()
				o.Logger = slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
			},
			calls: []string{"lookup web", "power-on=false web"}, forbid: []string{"create", "import"},
			vm: "web", written: -1,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				if warnings.Len() != 0 || res.Disks[0].Transport != WriteTransportNBD {
					t.Errorf("transport %s, warnings:\n%s", res.Disks[0].Transport, warnings.String())
				}
			},
		},
		{
			name: "--replace through nfc only: refused, saying why",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Replace: true, Create: vsphere.CreateSpec{Name: "web"}}
			},
			opts:    func(o *RestoreOptions, h *memHV) { o.Transports = []string{WriteTransportNFC} },
			errText: "nfc writes disks only while it creates a VM",
			calls:   []string{"lookup web"}, forbid: []string{"create", "import"},
			written: 0,
		},
		{
			name: "quick rollback: only the changed areas",
			change: func(h *memHV, vm *memVM, _ string) {
				vm.disk("scsi0-0").write(64<<10, bytes.Repeat([]byte{0xcc}, 12288))  // data area of the point
				vm.disk("scsi0-0").write(1600<<10, bytes.Repeat([]byte{0xdd}, 4096)) // a hole of the point
				// bytes CBT does not know of: a rollback must not touch them
				copy(vm.disk("scsi0-1").data[8192:], "not tracked")
			},
			req:    rollback(false),
			calls:  []string{"lookup web", `changed-base scsi0-0 since "52 scsi0-0 e1/1"`, `changed-base scsi0-1 since "52 scsi0-1 e1/1"`},
			forbid: writes,
			vm:     "web", written: 12288,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				if res.Mode != "rollback" || res.Disks[0].ChangedBytes != 16384 || res.Disks[0].ZeroBytes != 4096 {
					t.Errorf("mode %s, disk 0: CBT %d, zeroed %d; want rollback, 16384, 4096", res.Mode, res.Disks[0].ChangedBytes, res.Disks[0].ZeroBytes)
				}
				if !bytes.Equal(h.vms["web"].disk("scsi0-1").data[8192:8192+11], []byte("not tracked")) {
					t.Error("an area CBT did not report was written")
				}
			},
		},
		{
			// a rollback's usual shape: many small areas, in data and in
			// holes of the point (read through an area reader)
			name: "quick rollback: many scattered areas",
			change: func(h *memHV, vm *memVM, _ string) {
				for i := 0; i < 80; i++ { // 43 in the data half, 37 in holes
					vm.disk("scsi0-0").write(i*24<<10, bytes.Repeat([]byte{0xcc}, 1024))
				}
			},
			req:    rollback(false),
			forbid: writes,
			vm:     "web", written: 43 << 10,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				if d := res.Disks[0]; d.ChangedBytes != 80<<10 || d.ZeroBytes != 37<<10 {
					t.Errorf("disk 0: CBT %d, zeroed %d; want %d, %d", d.ChangedBytes, d.ZeroBytes, 80<<10, 37<<10)
				}
			},
		},
		{
			// the first disk's prestarted NBD server is stopped unused
			name: "quick rollback: only the second disk changed",
			change: func(h *memHV, vm *memVM, _ string) {
				vm.disk("scsi0-1").write(0, bytes.Repeat([]byte{0xee}, 8192))
			},
			req:    rollback(false),
			forbid: writes,
			vm:     "web", written: 8192,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				if res.Disks[0].Transport != "" || res.Disks[1].ChangedBytes != 8192 {
					t.Errorf("disk 0 written through %q, disk 1 CBT %d; want none, 8192", res.Disks[0].Transport, res.Disks[1].ChangedBytes)
				}
				left, _ := filepath.Glob(filepath.Join(os.TempDir(), nbdDirPrefix+strconv.Itoa(os.Getpid())+"-*"))
				if len(left) > 0 {
					t.Errorf("NBD server directories left after the rollback: %q", left)
				}
			},
		},
		{
			name:    "quick rollback: VM powered on",
			change:  func(h *memHV, vm *memVM, _ string) { vm.poweredOn = true },
			req:     rollback(false),
			wantErr: ErrNotPoweredOff, forbid: append(writes, "changed-base"),
		},
		{
			name: "quick rollback: another CBT epoch",
			change: func(h *memHV, vm *memVM, _ string) {
				d := vm.disk("scsi0-1")
				d.epoch, d.seq = "52 scsi0-1 e2", 0
				d.write(0, []byte("after the reset"))
			},
			req:     rollback(false),
			wantErr: ErrCBTCannotAnswer, errText: "scsi0-1",
			calls: []string{`changed-base scsi0-1 since "52 scsi0-1 e1/1"`}, forbid: writes,
			written: 0,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				// scsi0-0's NBD server started while CBT was asked: the
				// refusal stops it and removes its directory
				left, _ := filepath.Glob(filepath.Join(os.TempDir(), nbdDirPrefix+strconv.Itoa(os.Getpid())+"-*"))
				if len(left) > 0 {
					t.Errorf("NBD server directories left after a refused rollback: %q", left)
				}
			},
		},
		{
			name: "quick rollback: resized disk",
			change: func(h *memHV, vm *memVM, _ string) {
				vm.disk("scsi0-1").resize(2 * mib)
			},
			req:     rollback(false),
			wantErr: ErrCBTCannotAnswer, errText: "scsi0-1",
			forbid: writes, written: 0,
		},
		{
			name: "--full after another epoch: everything written",
			change: func(h *memHV, vm *memVM, _ string) {
				d := vm.disk("scsi0-1")
				d.epoch, d.seq = "52 scsi0-1 e2", 0
				d.write(0, []byte("after the reset"))
			},
			req:   rollback(true),
			calls: []string{"lookup web"}, forbid: append(writes, "changed-base"),
			vm: "web", written: -1,
		},
		{
			name: "write failure mid-restore: the new VM removed",
			change: func(h *memHV, vm *memVM, dir string) {
				os.WriteFile(filepath.Join(dir, "scsi0-1.fail"), nil, 0o644)
			},
			req:     newVM("web2"),
			errText: "restore disk scsi0-1 through nbd",
			calls:   []string{"create web2", "destroy web2"}, forbid: []string{"finish", "rename"},
			written: 1 << 20, // scsi0-0's data, then scsi0-1 failed
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				if _, ok := h.vms["web2"]; ok {
					t.Error("the half-restored VM is left")
				}
				var re *RestoreError
				if !errors.As(err, &re) || re.Removed != "web2" || re.LeftVM != "" {
					t.Errorf("error %#v, want a RestoreError saying web2 was removed and nothing left", err)
				}
			},
		},
		{
			name: "write failure, removal fails: renamed -failed-restore",
			change: func(h *memHV, vm *memVM, dir string) {
				os.WriteFile(filepath.Join(dir, "scsi0-0.fail"), nil, 0o644)
				h.destroyErr = errors.New("destroy refused")
			},
			req:     newVM("web2"),
			errText: "renamed \"web2-failed-restore\"",
			calls:   []string{"create web2", "destroy web2", "rename web2 web2-failed-restore"}, forbid: []string{"finish"},
			written: 0,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				var re *RestoreError
				if !errors.As(err, &re) || re.LeftVM != "web2"+FailedRestoreSuffix {
					t.Errorf("error %v, want a RestoreError naming the renamed VM", err)
				}
				if _, ok := h.vms["web2"+FailedRestoreSuffix]; !ok {
					t.Error("no VM renamed -failed-restore")
				}
			},
		},
		{
			name: "point without configuration",
			req: func(p blockmap.Point) RestoreRequest {
				p.Attachments = nil
				return RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "web2"}}
			},
			wantErr: ErrNoVMConfig, forbid: writes, written: 0,
		},
		{
			name: "nfc refused, nbd next",
			req:  newVM("web2"),
			opts: func(o *RestoreOptions, h *memHV) {
				o.Transports = []string{WriteTransportNFC, WriteTransportNBD}
			},
			calls: []string{"import web2", "create web2", "finish web2"},
			vm:    "web2", written: -1,
		},
		{
			name: "unknown host: stopped at once, not retried through nbd",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "web2", Host: "esx9"}}
			},
			opts: func(o *RestoreOptions, h *memHV) {
				o.Transports = []string{WriteTransportNFC, WriteTransportNBD}
				warnings.Reset()
				o.Logger = slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
			},
			wantErr: vsphere.ErrPlacement, errText: `host "esx9"`,
			calls: []string{"import web2"}, forbid: writes, written: 0,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				var pe *vsphere.PlacementError
				if !errors.As(err, &pe) || pe.Field != "host" || warnings.Len() != 0 {
					t.Errorf("error %v, warnings:\n%s", err, warnings.String())
				}
			},
		},
		{
			name: "unknown datastore: stopped at once, not retried through nbd",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "web2", Datastore: "ds9"}}
			},
			opts: func(o *RestoreOptions, h *memHV) {
				o.Transports = []string{WriteTransportNFC, WriteTransportNBD}
				warnings.Reset()
				o.Logger = slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
			},
			wantErr: vsphere.ErrPlacement, errText: `datastore "ds9"`,
			calls: []string{"import web2"}, forbid: writes, written: 0,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				var pe *vsphere.PlacementError
				if !errors.As(err, &pe) || pe.Field != "datastore" || warnings.Len() != 0 {
					t.Errorf("error %v, warnings:\n%s", err, warnings.String())
				}
			},
		},
		{
			name: "unknown folder: stopped at once, not retried through nbd",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "web2", Folder: "nofolder"}}
			},
			opts: func(o *RestoreOptions, h *memHV) {
				o.Transports = []string{WriteTransportNFC, WriteTransportNBD}
				warnings.Reset()
				o.Logger = slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
			},
			wantErr: vsphere.ErrPlacement, errText: `folder "nofolder"`,
			calls: []string{"import web2"}, forbid: writes, written: 0,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				var pe *vsphere.PlacementError
				if !errors.As(err, &pe) || pe.Field != "folder" || warnings.Len() != 0 {
					t.Errorf("error %v, warnings:\n%s", err, warnings.String())
				}
			},
		},
		{
			name: "unknown cluster: stopped at once, not retried through nbd",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "web2", Cluster: "cl9"}}
			},
			opts: func(o *RestoreOptions, h *memHV) {
				o.Transports = []string{WriteTransportNFC, WriteTransportNBD}
				warnings.Reset()
				o.Logger = slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
			},
			wantErr: vsphere.ErrPlacement, errText: `cluster "cl9"`,
			calls: []string{"import web2"}, forbid: writes, written: 0,
			check: func(t *testing.T, h *memHV, res *RestoreResult, err error) {
				var pe *vsphere.PlacementError
				if !errors.As(err, &pe) || pe.Field != "cluster" || warnings.Len() != 0 {
					t.Errorf("error %v, warnings:\n%s", err, warnings.String())
				}
			},
		},
		{
			name: "host and cluster both: refused before any call",
			req: func(p blockmap.Point) RestoreRequest {
				return RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "web2", Host: "esx1", Cluster: "cl1"}}
			},
			opts:    func(o *RestoreOptions, h *memHV) { o.Transports = []string{WriteTransportNFC, WriteTransportNBD} },
			wantErr: vsphere.ErrPlacement, errText: `cluster "cl1" both given`,
			forbid: append(writes, "import", "lookup", "incomplete"), written: 0,
		},
		{
			name: "hotadd writes through the proxy",
			req:  newVM("web2"),
			opts: func(o *RestoreOptions, h *memHV) {
				o.Transports = []string{WriteTransportHotAdd}
				o.ProxyVM, o.HotAddDevice = "proxy", h.device
			},
			calls: []string{"create web2", "find-proxy proxy", "attach [mem] web2/scsi0-0.vmdk", "detach [mem] web2/scsi0-0.vmdk",
				"attach [mem] web2/scsi0-1.vmdk", "detach [mem] web2/scsi0-1.vmdk", "finish web2"},
			vm: "web2", written: 0, // no NBD server saw them
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runRestoreCase(t, tc)
		})
	}
}

func runRestoreCase(t *testing.T, tc restoreCase) {
	ctx := context.Background()
	repo := testutil.NewRepo(t)
	h := newMemHV(t.TempDir())
	vm := h.addVM("web", 2<<20, 1<<20)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bres, err := Backup(ctx, repo, h, "web", JobOptions{Transports: []string{TransportFile}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	p := bres.Point
	logs := t.TempDir()
	if tc.change != nil {
		tc.change(h, vm, logs)
	}
	if err := h.store(); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, d := range vm.disks {
		before[d.name] = slices.Clone(d.data)
	}
	opts := RestoreOptions{
		NBDCommand: "nbdkit -t 1 -U {socket} -f --filter=log --filter=error file {disk_local_path} logfile=" + logs + "/{vm}-{disk}.log" +
			" error=EIO error-pwrite-rate=100% error-zero-rate=100% error-file=" + logs + "/{disk}.fail",
		NBD:    nbd.Options{Retries: 2, RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond},
		Logger: quiet,
	}
	if tc.opts != nil {
		tc.opts(&opts, h)
	}
	h.calls = nil
	res, err := Restore(ctx, repo, h, tc.req(p), opts)
	if rerr := h.reload(); rerr != nil {
		t.Fatal(rerr)
	}
	switch {
	case tc.wantErr == nil && tc.errText == "" && err != nil:
		t.Fatalf("restore: %v", err)
	case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
		t.Fatalf("error %v, want %v", err, tc.wantErr)
	case tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText)):
		t.Fatalf("error %v, want one saying %q", err, tc.errText)
	}
	checkCalls(t, 0, h.calls, tc.calls)
	for _, c := range h.calls {
		for _, f := range tc.forbid {
			if strings.HasPrefix(c, f) {
				t.Errorf("call %q made (calls %q)", c, h.calls)
			}
		}
	}
	// the bytes that reached the target files, by the NBD server's log
	var dataBytes, sent int64
	for _, pd := range p.Disks {
		r, err := repo.OpenDisk(ctx, p, pd.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range r.DataExtents() {
			dataBytes += e.Length
		}
		r.Close()
	}
	logFiles, _ := filepath.Glob(filepath.Join(logs, "*.log"))
	for _, f := range logFiles {
		n := nbdLogWritten(t, f)
		sent += n
		// one flush makes a disk durable, whatever the connections (the
		// server advertises multi-conn: a flush covers them all)
		if data, _ := os.ReadFile(f); err == nil && n > 0 {
			if k := len(nbdFlushRE.FindAll(data, -1)); k != 1 {
				t.Errorf("%s: %d flush requests, want 1", filepath.Base(f), k)
			}
		}
	}
	want := tc.written
	if want < 0 {
		want = dataBytes
	}
	if sent != want {
		t.Errorf("%d bytes reached the target disks, want %d (the point holds %d data bytes)", sent, want, dataBytes)
	}
	if res != nil && tc.written != 0 && res.BytesWritten() != want {
		t.Errorf("the result says %d bytes written, want %d", res.BytesWritten(), want)
	}
	if err == nil && tc.vm == "" {
		t.Fatal("restore succeeded; the case names no VM to check")
	}
	if tc.vm != "" {
		target := h.vms[tc.vm]
		if target == nil {
			t.Fatalf("no VM %s after the restore", tc.vm)
		}
		for _, pd := range p.Disks {
			r, err := repo.OpenDisk(ctx, p, pd.Name)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, pd.Size)
			if _, err := r.ReadAt(want, 0); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			r.Close()
			got := target.disk(pd.Name).data
			if tc.name == "quick rollback: only the changed areas" && pd.Name == "scsi0-1" {
				copy(want[8192:], "not tracked")
			}
			if !bytes.Equal(got, want) {
				t.Errorf("disk %s of %s differs from the point", pd.Name, tc.vm)
			}
		}
	} else if err != nil && !tc.overwrote {
		// a refused restore leaves the existing VM's disks as they were
		for _, d := range vm.disks {
			if !bytes.Equal(d.data, before[d.name]) {
				t.Errorf("disk %s of web changed by a refused restore", d.name)
			}
		}
	}
	if tc.check != nil {
		tc.check(t, h, res, err)
	}
	recs, jerr := NewJobLog(repo.Dir()).List()
	if jerr != nil {
		t.Fatal(jerr)
	}
	var rec *JobRecord
	for i := range recs {
		if recs[i].Kind == JobRestore {
			rec = &recs[i]
		}
	}
	if rec == nil {
		t.Fatalf("no restore in the job log (%d records)", len(recs))
	}
	// bytes_read: what was read from the point; nbd and hotadd read
	// exactly the data they write
	if res != nil && (rec.BytesRead != res.BytesWritten() || res.BytesRead != rec.BytesRead) {
		t.Errorf("job record: %d bytes read, result %d, want the %d bytes written", rec.BytesRead, res.BytesRead, res.BytesWritten())
	}
	if tc.written > 0 && rec.BytesRead < tc.written {
		t.Errorf("job record: %d bytes read, fewer than the %d written", rec.BytesRead, tc.written)
	}
	if tc.job != nil {
		tc.job(t, *rec)
	}
}

// nbdWriteRE matches a write request in nbdkit's log filter output and
// its reply.
var (
	nbdWriteRE  = regexp.MustCompile(`Write id=(\d+) offset=0x[0-9a-f]+ count=0x([0-9a-f]+)`)
	nbdReturnRE = regexp.MustCompile(`\.\.\.Write id=(\d+) return=0`)
	nbdFlushRE  = regexp.MustCompile(`(?m)connection=\d+ Flush id=`)
)

// nbdLogWritten sums the bytes of the write requests the server
// completed without error.
func nbdLogWritten(t *testing.T, file string) int64 {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	var n int64
	for _, line := range strings.Split(string(data), "\n") {
		if m := nbdReturnRE.FindStringSubmatch(line); m != nil {
			n += sizes[m[1]]
			continue
		}
		if m := nbdWriteRE.FindStringSubmatch(line); m != nil {
			c, _ := strconv.ParseInt(m[2], 16, 64)
			sizes[m[1]] = c
		}
	}
	return n
}

// TestRestoreDiskPlan: a disk of a point restored to another VM is added,
// written (its data only) and left attached; a write failure removes it.
func TestRestoreDiskPlan(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "written", true: "write fails"}[fail], func(t *testing.T) {
			ctx := context.Background()
			repo := testutil.NewRepo(t)
			h := newMemHV(t.TempDir())
			h.addVM("web", 2<<20, 1<<20)
			helper := h.addVM("helper", 1<<20)
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			bres, err := Backup(ctx, repo, h, "web", JobOptions{Transports: []string{TransportFile}, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			logs := t.TempDir()
			if fail {
				os.WriteFile(filepath.Join(logs, "scsi0-1.fail"), nil, 0o644)
			}
			opts := RestoreOptions{
				NBDCommand: "nbdkit -t 1 -U {socket} -f --filter=log --filter=error file {disk_local_path} logfile=" + logs + "/{disk}.log" +
					" error=EIO error-pwrite-rate=100% error-file=" + logs + "/{disk}.fail",
				NBD:    nbd.Options{Retries: 1, RetryBackoff: time.Millisecond},
				Logger: quiet,
			}
			h.calls = nil
			res, err := RestoreDisk(ctx, repo, h, RestoreDiskRequest{Point: bres.Point, Disk: "scsi0-1", TargetVM: "helper"}, opts)
			if rerr := h.reload(); rerr != nil {
				t.Fatal(rerr)
			}
			if fail {
				if err == nil {
					t.Fatal("restore of a disk whose writes fail succeeded")
				}
				checkCalls(t, 0, h.calls, []string{"lookup helper", "add-disk helper 1048576", "remove-disk helper scsi0-1"})
				if len(helper.disks) != 1 {
					t.Errorf("helper has %d disks after a failed restore, want 1", len(helper.disks))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkCalls(t, 0, h.calls, []string{"lookup helper", "add-disk helper 1048576"})
			r, err := repo.OpenDisk(ctx, bres.Point, "scsi0-1")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			want := make([]byte, r.Size())
			r.ReadAt(want, 0)
			if len(helper.disks) != 2 || !bytes.Equal(helper.disk("scsi0-1").data, want) {
				t.Fatal("the new disk of helper differs from the point's")
			}
			if sent := nbdLogWritten(t, filepath.Join(logs, "scsi0-1.log")); sent != r.DataBytes() || res.BytesWritten() != sent {
				t.Errorf("%d bytes reached the disk (result %d), want the point's data %d", sent, res.BytesWritten(), r.DataBytes())
			}
		})
	}
}

// TestCleanupRestoresMem: a VM still marked by a restore process that is
// gone is destroyed (its disks detached from the proxy first); one of a
// running restore is left alone.
func TestCleanupRestoresMem(t *testing.T) {
	ctx := context.Background()
	h := newMemHV(t.TempDir())
	dead := h.addVM("dead", 1<<20)
	dead.marker, dead.markerPID = "job-1", deadPID(t)
	live := h.addVM("live", 1<<20)
	live.marker = "job-2"
	h.addVM("web", 1<<20)
	h.proxy.hv = h
	if _, err := h.proxy.AttachForWrite(ctx, "[mem] dead/scsi0-0.vmdk"); err != nil {
		t.Fatal(err)
	}
	h.calls = nil
	// as a restore calls it: with its logger, which carries its own job id
	var logs bytes.Buffer
	removed, err := CleanupRestores(ctx, h, "proxy", slog.New(slog.NewJSONHandler(&logs, nil)).With("job", "job-3"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Count(l, `"job":`) != 1 || !strings.Contains(l, `"restore_job":"job-`) {
			t.Errorf("log line with a duplicate or missing key: %s", l)
		}
	}
	if !slices.Equal(removed, []string{"dead"}) {
		t.Errorf("removed %v, want [dead]", removed)
	}
	checkCalls(t, 0, h.calls, []string{"incomplete", "find-proxy proxy", "detach-folder [mem] dead/dead.vmx", "destroy dead"})
	if _, ok := h.vms["live"]; !ok || len(h.proxy.attached) != 0 {
		t.Errorf("live VM kept %v, attached disks left %v", ok, h.proxy.attached)
	}
}

// deadPID is the id of a process that has ended.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}
