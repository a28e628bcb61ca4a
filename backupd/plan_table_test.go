package backupd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// wantDisk is what a point must record about one disk.
type wantDisk struct {
	full   bool
	reason string // part of the full reason ("" for an incremental)
	// since is the base the areas came from: "*" (CBT's allocated areas),
	// "" (the transport's allocation map), "prev" (the changeId of the
	// previous point's disk).
	since   string
	changed int64 // bytes CBT reported (-1: not checked)
}

// planStep is one backup of the VM after change.
type planStep struct {
	change      func(h *memHV, vm *memVM)
	opts        func(o *JobOptions, h *memHV)
	wantErr     string
	disks       map[string]wantDisk // exactly the disks of the point
	consistency string              // "" means quiesced
	transport   string              // "" means file
	calls       []string            // these calls, in this order, among the job's
	calls2      []string            // and these, in this order (another disk)
	quiesceErr  bool                // the point records a quiesce fault
}

func full(reason string) wantDisk {
	return wantDisk{full: true, reason: reason, since: "*", changed: -1}
}
func incr(changed int64) wantDisk { return wantDisk{since: "prev", changed: changed} }

// TestPlan drives whole backup jobs against the in-memory hypervisor and
// checks, per disk, what the point records: full or incremental, why, the
// base of the areas, and that the point holds the snapshot's bytes.
func TestPlan(t *testing.T) {
	const mib = 1 << 20
	first := planStep{disks: map[string]wantDisk{"scsi0-0": full("first backup of this VM"), "scsi0-1": full("first backup of this VM")}}
	cases := []struct {
		name  string
		steps []planStep
	}{
		{"first backup", []planStep{first}},
		{"incremental", []planStep{first, {
			change: func(h *memHV, vm *memVM) { vm.disk("scsi0-0").write(mib, bytes.Repeat([]byte{0xee}, 4096)) },
			disks:  map[string]wantDisk{"scsi0-0": incr(4096), "scsi0-1": incr(0)},
			calls:  []string{`changed scsi0-0 since "52 scsi0-0 e1/1"`, `changed scsi0-1 since "52 scsi0-1 e1/1"`},
		}}},
		{"changeId of another epoch", []planStep{first, {
			change: func(h *memHV, vm *memVM) {
				d := vm.disk("scsi0-0")
				d.epoch, d.seq = "52 scsi0-0 e2", 0 // CBT was reset
				d.write(0, []byte("after the reset"))
			},
			disks: map[string]wantDisk{"scsi0-0": full("changed block tracking was reset"), "scsi0-1": incr(0)},
		}}},
		{"rejected changeId", []planStep{first, {
			change: func(h *memHV, vm *memVM) { h.rejectChangeIDs = true },
			disks:  map[string]wantDisk{"scsi0-0": full("stored changeId rejected by vSphere"), "scsi0-1": full("stored changeId rejected by vSphere")},
		}}},
		{"resized disk", []planStep{first, {
			change: func(h *memHV, vm *memVM) {
				d := vm.disk("scsi0-1")
				d.resize(4 * mib)
				d.write(3*mib, []byte("in the new part"))
			},
			disks: map[string]wantDisk{"scsi0-0": incr(0), "scsi0-1": full("disk size changed from 2097152 to 4194304 bytes")},
		}}},
		{"added disk", []planStep{first, {
			change: func(h *memHV, vm *memVM) { vm.addDisk("scsi0-2", mib) },
			disks:  map[string]wantDisk{"scsi0-0": incr(0), "scsi0-1": incr(0), "scsi0-2": full("first backup of this disk")},
		}}},
		{"removed disk", []planStep{first, {
			change: func(h *memHV, vm *memVM) { vm.removeDisk("scsi0-0") },
			disks:  map[string]wantDisk{"scsi0-1": incr(0)},
		}}},
		{"CBT off: the job switches it on", []planStep{{
			change: func(h *memHV, vm *memVM) {
				vm.cbtEnabled = false
				for _, d := range vm.disks {
					d.epoch = ""
				}
			},
			disks: first.disks,
			calls: []string{"enable-cbt", "snapshot quiesce=true"},
		}}},
		{"CBT unsupported", []planStep{{
			change:  func(h *memHV, vm *memVM) { vm.cbtSupported = false },
			wantErr: "changed block tracking is not supported",
		}}},
		{"disk without changeId: allocation map", []planStep{
			{
				change: func(h *memHV, vm *memVM) { vm.disk("scsi0-1").noCBT = true },
				disks:  map[string]wantDisk{"scsi0-0": full("first backup of this VM"), "scsi0-1": {full: true, reason: "first backup of this VM", changed: -1}},
			},
			{
				change: func(h *memHV, vm *memVM) { vm.disk("scsi0-1").write(0, []byte("x")) },
				disks:  map[string]wantDisk{"scsi0-0": incr(0), "scsi0-1": {full: true, reason: "the previous point stored no changeId", changed: -1}},
			},
		}},
		{"quiesce fault, auto: crash-consistent", []planStep{{
			change:      func(h *memHV, vm *memVM) { vm.quiesceFault = true },
			disks:       first.disks,
			consistency: vsphere.ConsistencyCrash,
			calls:       []string{"snapshot quiesce=true", "snapshot quiesce=false"},
			quiesceErr:  true,
		}}},
		{"quiesce fault, require: fails", []planStep{{
			change:  func(h *memHV, vm *memVM) { vm.quiesceFault = true },
			opts:    func(o *JobOptions, _ *memHV) { o.Quiesce = vsphere.QuiesceRequire },
			wantErr: "failed and quiescing is required",
		}}},
		{"quiesce off: never quiesced", []planStep{{
			change:      func(h *memHV, vm *memVM) { vm.quiesceFault = true },
			opts:        func(o *JobOptions, _ *memHV) { o.Quiesce = vsphere.QuiesceOff },
			disks:       first.disks,
			consistency: vsphere.ConsistencyCrash,
			calls:       []string{"snapshot quiesce=false", "changed scsi0-0 since \"*\""},
		}}},
		{"transport fallback: hotadd, nbd, then file", []planStep{{
			change: func(h *memHV, vm *memVM) { h.attachErr = errors.New("no free SCSI slot") },
			opts: func(o *JobOptions, h *memHV) {
				o.Transports = []string{TransportHotAdd, TransportNBD, TransportFile}
				o.ProxyVM = "proxy"
				o.NBDURL = "nbd+unix:///?socket=" + filepath.Join(h.dir, "no-server.sock")
			},
			disks: first.disks,
			calls: []string{"find-proxy proxy", "snapshot quiesce=true", "attach [mem] vm/snapshot-1-scsi0-0.img"},
		}}},
		{"transport fallback: hotadd works", []planStep{{
			opts: func(o *JobOptions, h *memHV) {
				o.Transports = []string{TransportHotAdd, TransportFile}
				o.ProxyVM, o.HotAddDevice = "proxy", h.device
			},
			disks:     first.disks,
			transport: TransportHotAdd,
			calls:     []string{"attach [mem] vm/snapshot-1-scsi0-0.img", "detach [mem] vm/snapshot-1-scsi0-0.img"},
			calls2:    []string{"attach [mem] vm/snapshot-1-scsi0-1.img", "detach [mem] vm/snapshot-1-scsi0-1.img"},
		}}},
		{"transport fallback: none opens", []planStep{{
			opts: func(o *JobOptions, h *memHV) {
				o.Transports = []string{TransportHotAdd, TransportNBD}
				o.NBDURL = "nbd+unix:///?socket=" + filepath.Join(h.dir, "no-server.sock")
			},
			wantErr: "no transport could open it (hotadd: hotadd needs the appliance's own VM (the proxy VM) to attach disks to; nbd: ",
		}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			repo := testutil.NewRepo(t)
			h := newMemHV(t.TempDir())
			vm := h.addVM("vm", 2*mib, 2*mib)
			var prev *blockmap.Point
			for i, st := range tc.steps {
				if st.change != nil {
					st.change(h, vm)
				}
				opts := JobOptions{Transports: []string{TransportFile}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
				if st.opts != nil {
					st.opts(&opts, h)
				}
				h.calls = nil
				res, err := Backup(ctx, repo, h, "vm", opts)
				if len(vm.snaps) != 0 {
					t.Errorf("step %d: snapshots left: %v", i, vm.snaps)
				}
				if st.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), st.wantErr) {
						t.Fatalf("step %d: error %v, want one with %q", i, err, st.wantErr)
					}
					if pts, _ := repo.Points(ctx, "vm"); len(pts) != i {
						t.Errorf("step %d: a failed job left %d points", i, len(pts))
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				checkCalls(t, i, h.calls, st.calls)
				checkCalls(t, i, h.calls, st.calls2)
				checkPoint(t, i, repo, res, vm, prev, st)
				prev = &res.Point
			}
		})
	}
}

// checkCalls checks that want appear in calls in that order.
func checkCalls(t *testing.T, step int, calls, want []string) {
	t.Helper()
	i := 0
	for _, c := range calls {
		if i < len(want) && c == want[i] {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("step %d: calls %q lack %q (in order)", step, calls, want[i:])
	}
}

func checkPoint(t *testing.T, step int, repo *blockmap.Repo, res *Result, vm *memVM, prev *blockmap.Point, st planStep) {
	t.Helper()
	ctx := context.Background()
	p := res.Point
	var pm PointMeta
	if err := json.Unmarshal(p.Meta, &pm); err != nil {
		t.Fatal(err)
	}
	wantCons := st.consistency
	if wantCons == "" {
		wantCons = vsphere.ConsistencyQuiesced
	}
	if p.Consistency != wantCons || pm.Consistency != wantCons || (pm.QuiesceError != "") != st.quiesceErr {
		t.Errorf("step %d: consistency %q (meta %q, quiesce error %q), want %q", step, p.Consistency, pm.Consistency, pm.QuiesceError, wantCons)
	}
	var names []string
	for _, d := range p.Disks {
		names = append(names, d.Name)
	}
	var wantNames []string
	for n := range st.disks {
		wantNames = append(wantNames, n)
	}
	slices.Sort(names)
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Fatalf("step %d: point disks %v, want %v", step, names, wantNames)
	}
	for name, want := range st.disks {
		info, _ := p.Disk(name)
		meta, ok := ReadDiskMeta(info)
		if !ok {
			t.Fatalf("step %d: disk %s has no metadata", step, name)
		}
		since := want.since
		if since == "prev" {
			pinfo, _ := prev.Disk(name)
			pmeta, _ := ReadDiskMeta(pinfo)
			since = pmeta.ChangeID
		}
		if meta.Full != want.full || !strings.Contains(meta.FullReason, want.reason) || (want.reason == "" && meta.FullReason != "") || meta.BaseChangeID != since {
			t.Errorf("step %d: disk %s: full %v (%q) since %q; want full %v (%q) since %q", step, name, meta.Full, meta.FullReason, meta.BaseChangeID, want.full, want.reason, since)
		}
		if want.changed >= 0 && meta.ChangedBytes != want.changed {
			t.Errorf("step %d: disk %s: %d changed bytes, want %d", step, name, meta.ChangedBytes, want.changed)
		}
		if meta.ChangeID != vm.disk(name).changeID() {
			t.Errorf("step %d: disk %s: changeId %q stored, the snapshot's is %q", step, name, meta.ChangeID, vm.disk(name).changeID())
		}
		wantTransport := st.transport
		if wantTransport == "" {
			wantTransport = TransportFile
		}
		if meta.Transport != wantTransport && !(want.changed == 0 && !want.full) {
			t.Errorf("step %d: disk %s read via %q, want %q", step, name, meta.Transport, wantTransport)
		}
		r, err := repo.OpenDisk(ctx, p, name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.NewSectionReader(r, 0, info.Size))
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, vm.disk(name).data) {
			t.Errorf("step %d: disk %s: the point's bytes differ from the snapshot's", step, name)
		}
	}
}
