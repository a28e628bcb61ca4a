package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// backupRound is one transport configuration of the end-to-end test.
type backupRound struct {
	name string
	opts func(base backupd.JobOptions) backupd.JobOptions
}

// TestBackupEndToEnd backs up 2 VMs x 2 disks 10 times with random guest
// writes in between, rotating through nbd (qemu-nbd and nbdkit started from
// the command template), file and hotadd. Every point must equal the
// frozen disks byte for byte, the first backup of each disk must be full
// and the later ones must read no more than 1.1x the changed blocks.
func TestBackupEndToEnd(t *testing.T) {
	testutil.RequireTools(t, "qemu-nbd", "nbdkit")
	vms := []string{"web", "db"}
	sim := esxsimtest.Start(t, esxsim.Options{
		MaxChangedAreas: 5,
		ProxyVM:         "cairn-proxy",
		VMs: []esxsim.VMSpec{
			{Name: "web", Disks: []esxsim.DiskSpec{{Size: 16 << 20}, {Size: 8 << 20, Controller: esxsim.ControllerNVMe}}},
			{Name: "db", Disks: []esxsim.DiskSpec{{Size: 8 << 20, Controller: esxsim.ControllerSATA}, {Size: 16 << 20}}},
		},
	})
	conn := connectSim(t, sim)
	repo := newTestRepo(t)
	logDir := t.TempDir()
	// the qemu-nbd round goes through a script that first keeps a copy of
	// the frozen snapshot file it serves, to compare the point with
	frozenDir := t.TempDir()
	serve := filepath.Join(t.TempDir(), "serve.sh")
	script := "#!/bin/sh\ncp --sparse=always \"$1\" \"" + frozenDir + "/$3-$4.frozen\" && exec qemu-nbd -r -f raw --persistent -e 4 -k \"$2\" \"$1\"\n"
	if err := os.WriteFile(serve, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	base := backupd.JobOptions{ParallelDisks: 2, ProxyVM: "cairn-proxy", HotAddDevice: simHotAdd(sim),
		NBD: nbd.Options{RetryBackoff: 10e6}}
	rounds := []backupRound{
		{"nbd-qemu", func(o backupd.JobOptions) backupd.JobOptions {
			o.Transports, o.NBDCommand = []string{"nbd"}, serve+" {disk_local_path} {socket} {vm} {disk}"
			return o
		}},
		{"nbd-nbdkit", func(o backupd.JobOptions) backupd.JobOptions {
			o.Transports, o.NBDCommand = []string{"nbd"}, nbdkitLogTemplate(logDir)
			return o
		}},
		{"file", func(o backupd.JobOptions) backupd.JobOptions { o.Transports = []string{"file"}; return o }},
		{"hotadd", func(o backupd.JobOptions) backupd.JobOptions { o.Transports = []string{"hotadd"}; return o }},
	}
	rng := rand.New(rand.NewPCG(42, 7))
	changed := map[string][]map[int64]bool{}
	for _, vm := range vms {
		changed[vm] = []map[int64]bool{{}, {}}
	}
	names := map[string][]string{}
	for _, vm := range vms {
		names[vm] = diskNames(t, sim, vm)
	}
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		for _, vm := range vms {
			g, err := sim.Guest(vm)
			if err != nil {
				t.Fatal(err)
			}
			for d := 0; d < 2; d++ {
				n := 1 + rng.IntN(12)
				if i == 0 {
					n = 40
				}
				exts, err := g.WriteRandomBlocks(d, n, esxsim.BlockSize, rng)
				if err != nil {
					t.Fatal(err)
				}
				// an unaligned write too: CBT reports whole 64 KiB blocks
				off := rng.Int64N(int64(len(exts))) * 4096
				if err := g.WriteRandom(d, off, 5000, rng); err != nil {
					t.Fatal(err)
				}
				exts = append(exts, esxsim.Extent{Offset: off, Length: 5000})
				for b := range blocksOf(exts, esxsim.BlockSize) {
					changed[vm][d][b] = true
				}
			}
		}
		round := rounds[i%len(rounds)]
		opts := round.opts(base)
		outs := backupd.BackupVMs(ctx, repo, conn, vms, opts, backupd.ParallelOptions{VMs: 2, PerHost: 2})
		for k, out := range outs {
			vm := vms[k]
			if out.Err != nil {
				t.Fatalf("backup %d (%s) of %s: %v", i, round.name, vm, out.Err)
			}
			res := out.Result
			checkPoint(t, repo, res.Point, names[vm], runningImages(t, sim, vm))
			if round.name == "nbd-qemu" {
				var frozen [][]byte
				for _, name := range names[vm] {
					b, err := os.ReadFile(filepath.Join(frozenDir, vm+"-"+name+".frozen"))
					if err != nil {
						t.Fatalf("frozen copy: %v", err)
					}
					frozen = append(frozen, b)
				}
				checkPoint(t, repo, res.Point, names[vm], frozen)
			}
			if got := len(vmSnapshots(t, conn, sim, vm)); got != 0 {
				t.Fatalf("backup %d of %s left %d snapshots", i, vm, got)
			}
			for d, dr := range res.Disks {
				idx := indexOf(names[vm], dr.Name)
				if dr.Transport != opts.Transports[0] {
					t.Errorf("backup %d of %s disk %s used transport %s, want %s", i, vm, dr.Name, dr.Transport, opts.Transports[0])
				}
				if i == 0 != dr.Full {
					t.Errorf("backup %d of %s disk %s: full=%v (%s)", i, vm, dr.Name, dr.Full, dr.FullReason)
				}
				limit := int64(float64(int64(len(changed[vm][idx]))*esxsim.BlockSize) * 1.1)
				read := dr.BytesRead
				if round.name == "nbd-nbdkit" {
					read = serverReadBytes(t, filepath.Join(logDir, fmt.Sprintf("%s-%s.log", vm, dr.Name)))
					if read != dr.BytesRead {
						t.Errorf("backup %d of %s disk %s: nbdkit served %d bytes, the client counted %d", i, vm, dr.Name, read, dr.BytesRead)
					}
				}
				if !dr.Full && read > limit {
					t.Errorf("backup %d (%s) of %s disk %s read %d bytes for %d changed blocks (limit %d)", i, round.name, vm, dr.Name, read, len(changed[vm][idx]), limit)
				}
				if dr.Full && read == 0 {
					t.Errorf("full backup of %s disk %s read nothing", vm, dr.Name)
				}
				_ = d
				changed[vm][idx] = map[int64]bool{}
			}
			for _, dr := range res.Disks {
				info, ok := res.Point.Disk(dr.Name)
				meta, mok := backupd.ReadDiskMeta(info)
				if !ok || !mok || meta.ChangeID == "" || meta.Transport != opts.Transports[0] || meta.BackingFile == "" || meta.Capacity != info.Size ||
					!strings.HasPrefix(meta.Label, "Hard disk ") || meta.BytesRead != dr.BytesRead || meta.Full != dr.Full || meta.UUID == "" {
					t.Errorf("point %s disk %s meta %+v (result %+v)", res.Point.ID, dr.Name, meta, dr)
				}
			}
			if res.Point.Consistency != blockmap.ConsistencyQuiesced {
				t.Errorf("consistency %s", res.Point.Consistency)
			}
		}
	}
	// every earlier point is still intact: re-check the first one is
	// readable and the count is right
	for _, vm := range vms {
		pts, err := repo.Points(ctx, vm)
		if err != nil || len(pts) != 10 {
			t.Fatalf("%s has %d points (%v)", vm, len(pts), err)
		}
	}
	jobs, err := backupd.NewJobLog(repo.Dir()).List()
	if err != nil || len(jobs) != 20 {
		t.Fatalf("job log: %d jobs, %v", len(jobs), err)
	}
	for _, j := range jobs {
		if j.State != backupd.JobOK || j.Point == "" || j.End.IsZero() {
			t.Errorf("job record %+v", j)
		}
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
