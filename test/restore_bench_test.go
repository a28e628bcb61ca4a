package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// BenchmarkRestore (issue 14's performance targets):
//
//	go test -run '^$' -bench BenchmarkRestore -benchtime 1x ./test/
//
// A disk of $CAIRN_BENCH_RESTORE_GIB GiB (default 4; 64 MiB of data, 64
// MiB of hole, ...) is backed up, then restored as a new VM onto the
// simulator's datastore through each write transport, against `qemu-img
// convert` of the same image into the same kind of target (a sparse file
// on the datastore, synced). Then 1 % of the disk changes and the VM is
// rolled back in place, against the full restore's time.
func BenchmarkRestore(b *testing.B) {
	testutil.RequireTools(b, "qemu-img", "nbdkit")
	size := int64(4 << 30)
	if g, err := strconv.Atoi(os.Getenv("CAIRN_BENCH_RESTORE_GIB")); err == nil && g > 0 {
		size = int64(g) << 30
	}
	ctx := context.Background()
	sim := esxsimtest.Start(b, esxsim.Options{ProxyVM: "proxy", VMs: []esxsim.VMSpec{{
		Name: "big", ChangeTracking: true, Disks: []esxsim.DiskSpec{{Size: size}},
	}}})
	g, _ := sim.Guest("big")
	rng := rand.New(rand.NewPCG(1, 2))
	for off := int64(0); off < size; off += 128 << 20 {
		if err := g.WriteRandom(0, off, 64<<20, rng); err != nil {
			b.Fatal(err)
		}
	}
	conn, err := vsphere.Connect(ctx, vsphere.ConnectOptions{
		URL: sim.URL.String(), Credentials: vsphere.Credentials{User: sim.User, Password: sim.Password}, Thumbprint: sim.Thumbprint,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	repo := testutil.NewRepo(b)
	if _, err := backupd.BackupVM(ctx, repo, conn, "big", backupd.JobOptions{Transports: []string{"file"}}); err != nil {
		b.Fatal(err)
	}
	p, err := repo.ResolvePoint(ctx, "big", "latest")
	if err != nil {
		b.Fatal(err)
	}
	src, _ := sim.DiskLocalPaths("big")
	const rounds = 3
	transports := []string{backupd.WriteTransportNBD, backupd.WriteTransportHotAdd, backupd.WriteTransportNFC}
	times := map[string][]time.Duration{}
	ratios := map[string][]float64{}
	var refs []time.Duration
	var written int64
	for round := 0; round < rounds; round++ {
		dst := filepath.Join(sim.DatastoreDir, "qemu-copy.raw")
		ref, err := timeIt(func() error {
			if err := runQuiet("qemu-img", "convert", "-f", "raw", "-O", "raw", src["scsi0-0"], dst); err != nil {
				return err
			}
			return runQuiet("sync", dst)
		})
		os.Remove(dst)
		if err != nil {
			b.Fatal(err)
		}
		refs = append(refs, ref)
		for _, tr := range transports {
			opts := backupd.RestoreOptions{NBDCommand: restoreNBDCommand, Transports: []string{tr}, ProxyVM: "proxy", HotAddDevice: simHotAdd(sim)}
			name := fmt.Sprintf("r-%s-%d", tr, round)
			var res *backupd.RestoreResult
			d, err := timeIt(func() error {
				var err error
				res, err = backupd.Restore(ctx, repo, conn, backupd.RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: name}}, opts)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			written = res.BytesWritten()
			times[tr] = append(times[tr], d)
			ratios[tr] = append(ratios[tr], 100*ref.Seconds()/d.Seconds())
			if ref, err := conn.LookupVM(ctx, name); err == nil {
				_ = conn.DestroyVM(ctx, ref)
			}
		}
	}
	// quick rollback of 1 % against a full overwrite of the same VM
	ref, _ := conn.LookupVM(ctx, "big")
	if err := conn.PowerOff(ctx, ref); err != nil {
		b.Fatal(err)
	}
	var rollbacks, fulls []time.Duration
	var rbRatios []float64
	var rbWritten int64
	for round := 0; round < rounds; round++ {
		if _, err := g.WriteRandomBlocks(0, int(size/100/esxsim.BlockSize), esxsim.BlockSize, rng); err != nil {
			b.Fatal(err)
		}
		var res *backupd.RestoreResult
		rb, err := timeIt(func() error {
			var err error
			res, err = backupd.Restore(ctx, repo, conn, backupd.RestoreRequest{Point: p, InPlace: true, Create: vsphere.CreateSpec{Name: "big"}},
				backupd.RestoreOptions{NBDCommand: restoreNBDCommand})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		rbWritten = res.BytesWritten()
		full, err := timeIt(func() error {
			_, err := backupd.Restore(ctx, repo, conn, backupd.RestoreRequest{Point: p, InPlace: true, Full: true, Create: vsphere.CreateSpec{Name: "big"}},
				backupd.RestoreOptions{NBDCommand: restoreNBDCommand})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		rollbacks, fulls = append(rollbacks, rb), append(fulls, full)
		rbRatios = append(rbRatios, 100*rb.Seconds()/full.Seconds())
	}
	var rows []string
	refMed := medianDuration(refs)
	for _, tr := range transports {
		d := medianDuration(times[tr])
		rows = append(rows, fmt.Sprintf("| new VM, %s | %.2f s (%.0f MB/s of data) | %.2f s | **%.0f %%** %s | ≥ 80 %% (fastest transport) |",
			tr, d.Seconds(), float64(written)/d.Seconds()/1e6, refMed.Seconds(), medianFloat(ratios[tr]), bracket(ratios[tr])))
	}
	rows = append(rows, fmt.Sprintf("| quick rollback, 1 %% changed (%s written) | %.2f s | full overwrite %.2f s | **%.1f %%** %s | < 5 %% |",
		humanSize(rbWritten), medianDuration(rollbacks).Seconds(), medianDuration(fulls).Seconds(), medianFloat(rbRatios), bracket(rbRatios)))
	writeSection(b, "restore", fmt.Sprintf(`## Restore to vSphere (BenchmarkRestore)

A %d GiB disk, half data (%s sent: the point's data, never more), restored
as a new VM onto the simulated datastore (a sparse file) through each write
transport, against `+"`qemu-img convert`"+` of the same image into a sparse
file on the same datastore, synced (the restore flushes too; its time
includes creating the VM). Ratio: qemu-img's time / cairn's (higher is
better); then a quick rollback of 1 %% changed against a full overwrite of
the same disk. Medians of %d rounds, all rounds in brackets.

| case | cairn | reference | ratio | target |
|---|---|---|---|---|
%s
`, size>>30, humanSize(written), rounds, strings.Join(rows, "\n")))
}

func bracket(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.0f", x))
	}
	return "(" + strings.Join(s, ", ") + ")"
}

func humanSize(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
