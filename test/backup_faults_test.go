package test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/nbd"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// faultEnv is one VM "vm1" with two disks that the guest filled partly.
type faultEnv struct {
	sim   *esxsim.Sim
	conn  *vsphere.Conn
	repo  *blockmap.Repo
	names []string
	rng   *rand.Rand
}

func newFaultEnv(t *testing.T, spec esxsim.VMSpec, proxy string) *faultEnv {
	t.Helper()
	spec.Name = "vm1"
	if len(spec.Disks) == 0 {
		spec.Disks = []esxsim.DiskSpec{{Size: 16 << 20}, {Size: 8 << 20, Controller: esxsim.ControllerSATA}}
	}
	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{spec}, ProxyVM: proxy})
	e := &faultEnv{sim: sim, conn: connectSim(t, sim), repo: newTestRepo(t), rng: rand.New(rand.NewPCG(11, 12))}
	e.names = diskNames(t, sim, "vm1")
	e.write(t, 40)
	return e
}

// write changes n random blocks on every disk.
func (e *faultEnv) write(t *testing.T, n int) {
	t.Helper()
	g, err := e.sim.Guest("vm1")
	if err != nil {
		t.Fatal(err)
	}
	for d := range e.names {
		if _, err := g.WriteRandomBlocks(d, n, esxsim.BlockSize, e.rng); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *faultEnv) backup(opts backupd.JobOptions) (*backupd.Result, error) {
	if opts.NBD.RetryBackoff == 0 {
		opts.NBD.RetryBackoff = time.Millisecond
	}
	return backupd.BackupVM(context.Background(), e.repo, e.conn, "vm1", opts)
}

// mustBackup backs up and checks the point against the running disks.
func (e *faultEnv) mustBackup(t *testing.T, opts backupd.JobOptions) *backupd.Result {
	t.Helper()
	res, err := e.backup(opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	checkPoint(t, e.repo, res.Point, e.names, runningImages(t, e.sim, "vm1"))
	e.noSnapshots(t)
	return res
}

// failedCleanly checks what a failed backup must leave: no snapshot and
// no new point.
func (e *faultEnv) failedCleanly(t *testing.T) {
	t.Helper()
	e.noSnapshots(t)
	if n := e.points(t); n != 0 {
		t.Fatalf("a failed backup left %d points", n)
	}
}

// recoversWithFull backs up through nbdkit after failures and checks that
// the first good backup is full.
func (e *faultEnv) recoversWithFull(t *testing.T) {
	t.Helper()
	res := e.mustBackup(t, nbdOpts(nbdkitTemplate))
	for _, d := range res.Disks {
		if !d.Full {
			t.Errorf("disk %s: the first good backup must be full", d.Name)
		}
	}
}

func (e *faultEnv) noSnapshots(t *testing.T) {
	t.Helper()
	if s := vmSnapshots(t, e.conn, e.sim, "vm1"); len(s) != 0 {
		t.Fatalf("snapshots left: %v", s)
	}
}

func (e *faultEnv) points(t *testing.T) int {
	t.Helper()
	pts, err := e.repo.Points(context.Background(), "vm1")
	if errors.Is(err, blockmap.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(pts)
}

func nbdOpts(tmpl string) backupd.JobOptions {
	return backupd.JobOptions{Transports: []string{"nbd"}, NBDCommand: tmpl}
}

func TestBackupNBDErrorsRetried(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	e.write(t, 100)
	opts := nbdOpts("nbdkit -t 1 -U {socket} -f --filter=error file {disk_local_path} error-pread-rate=1% error=EIO")
	opts.NBD = nbd.Options{MaxRequestSize: 4 << 10, Retries: 8} // many small reads: ~1% of them fail
	res := e.mustBackup(t, opts)
	var retries int64
	for _, d := range res.Disks {
		retries += d.Retries
	}
	if retries == 0 {
		t.Errorf("no read was retried: the error filter did not fire")
	}
}

func TestBackupNBDAlwaysFailing(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	opts := nbdOpts("nbdkit -t 1 -U {socket} -f --filter=error file {disk_local_path} error-pread-rate=100% error=EIO")
	opts.NBD = nbd.Options{Retries: 2}
	_, err := e.backup(opts)
	if err == nil || !strings.Contains(err.Error(), "nbd") {
		t.Fatalf("backup through a failing server: %v", err)
	}
	e.failedCleanly(t)
	e.recoversWithFull(t)
	if probs, err := e.repo.Check(context.Background()); err != nil || len(probs) != 0 {
		t.Errorf("repository check after a failed backup: %v %v", probs, err)
	}
}

func TestBackupNBDStallTimesOut(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	opts := nbdOpts("nbdkit -t 1 -U {socket} -f --filter=delay file {disk_local_path} delay-read=5")
	opts.NBD = nbd.Options{StallTimeout: 300 * time.Millisecond, Retries: 1}
	_, err := e.backup(opts)
	if !errors.Is(err, nbd.ErrStalled) {
		t.Fatalf("backup through a stalled server: %v, want ErrStalled", err)
	}
	e.failedCleanly(t)
}

// TestBackupNBDPausedTimesOut pauses the NBD server (nbdkit's pause
// filter) just as the backup starts reading: the stall timeout fails the
// reads, the reconnect meets the same paused server, and the job fails
// cleanly: no point, no snapshot. Once the server is resumed the next
// backup works.
func TestBackupNBDPausedTimesOut(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	e := newFaultEnv(t, esxsim.VMSpec{Disks: []esxsim.DiskSpec{{Size: 16 << 20}}}, "") // one disk: one server, one pause control socket
	e.write(t, 100)
	ctl := filepath.Join(t.TempDir(), "pause.sock")
	// delay-read keeps the reads going for seconds, so the pause lands
	// among them whatever the machine's speed.
	opts := nbdOpts("nbdkit -t 1 -U {socket} -f --filter=pause --filter=delay file {disk_local_path} delay-read=200ms pause-control=" + ctl)
	opts.NBD = nbd.Options{StallTimeout: 500 * time.Millisecond, Retries: 1}
	paused, backedUp := make(chan error, 1), make(chan struct{})
	go func() {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			select {
			case <-backedUp:
				paused <- errors.New("the backup ended before the server could be paused")
				return
			default:
			}
			pc, err := net.Dial("unix", ctl)
			if err != nil {
				continue
			}
			defer pc.Close()
			_, err = pc.Write([]byte{'p'})
			paused <- err
			return
		}
		paused <- errors.New("the pause control socket never appeared")
	}()
	_, err := e.backup(opts)
	close(backedUp)
	if perr := <-paused; perr != nil {
		t.Fatalf("%v (the backup: %v)", perr, err)
	}
	if !errors.Is(err, nbd.ErrStalled) {
		t.Fatalf("backup through a paused server: %v, want ErrStalled", err)
	}
	e.failedCleanly(t)
	e.recoversWithFull(t)
}

func TestBackupNBDServerKilled(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	pidDir := t.TempDir()
	opts := nbdOpts("nbdkit -t 1 -U {socket} -f -P " + filepath.Join(pidDir, "{disk}.pid") + " --filter=delay file {disk_local_path} delay-read=100ms")
	opts.NBD = nbd.Options{Retries: 2}
	opts.ParallelDisks = 1
	go func() {
		for i := 0; i < 500; i++ {
			b, err := os.ReadFile(filepath.Join(pidDir, e.names[0]+".pid"))
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
				time.Sleep(150 * time.Millisecond)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	_, err := e.backup(opts)
	if err == nil {
		t.Fatal("backup succeeded although its NBD server was killed")
	}
	e.failedCleanly(t)
	e.mustBackup(t, nbdOpts(qemuNBDTemplate))
}

func TestBackupQuiesceFault(t *testing.T) {
	e := newFaultEnv(t, esxsim.VMSpec{FailQuiesce: true}, "")
	file := backupd.JobOptions{Transports: []string{"file"}}
	res := e.mustBackup(t, file)
	if res.Point.Consistency != blockmap.ConsistencyCrash {
		t.Errorf("consistency %q after a quiesce fault, want crash-consistent", res.Point.Consistency)
	}
	if !strings.Contains(string(res.Point.Meta), "quiesce_error") {
		t.Errorf("point meta does not record the quiesce fault: %s", res.Point.Meta)
	}
	file.Quiesce = vsphere.QuiesceRequire
	if _, err := e.backup(file); err == nil || !strings.Contains(err.Error(), "require") {
		t.Fatalf("--quiesce=require with a quiesce fault: %v", err)
	}
	e.noSnapshots(t)
	// --quiesce=off does not ask the guest at all: no fault to record.
	file.Quiesce = vsphere.QuiesceOff
	res = e.mustBackup(t, file)
	if res.Point.Consistency != blockmap.ConsistencyCrash || strings.Contains(string(res.Point.Meta), "quiesce_error") {
		t.Errorf("--quiesce=off: consistency %q, meta %s; want crash-consistent without a quiesce fault", res.Point.Consistency, res.Point.Meta)
	}
	file.Quiesce = vsphere.QuiesceAuto
	if err := e.sim.SetFailQuiesce("vm1", false); err != nil {
		t.Fatal(err)
	}
	if res := e.mustBackup(t, file); res.Point.Consistency != blockmap.ConsistencyQuiesced {
		t.Errorf("consistency %q", res.Point.Consistency)
	}
}

func TestBackupCBTResetAndGrowthFallBackToFull(t *testing.T) {
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	file := backupd.JobOptions{Transports: []string{"file"}}
	e.mustBackup(t, file)
	e.write(t, 3)
	if res := e.mustBackup(t, file); res.Disks[0].Full || res.Disks[1].Full {
		t.Fatalf("second backup was full: %+v", res.Disks)
	}
	if err := e.sim.ResetCBT("vm1"); err != nil {
		t.Fatal(err)
	}
	e.write(t, 3)
	res := e.mustBackup(t, file)
	for _, d := range res.Disks {
		if !d.Full || !strings.Contains(d.FullReason, "reset") {
			t.Errorf("after a CBT reset disk %s: full=%v reason %q", d.Name, d.Full, d.FullReason)
		}
		info, _ := res.Point.Disk(d.Name)
		if !info.Full || info.FullReason != d.FullReason {
			t.Errorf("point disk %s does not record the full reason: %+v", d.Name, info)
		}
	}
	if err := e.sim.GrowDisk(context.Background(), "vm1", 1, 12<<20); err != nil {
		t.Fatal(err)
	}
	e.write(t, 2)
	res = e.mustBackup(t, file)
	for _, d := range res.Disks {
		grown := d.Name == e.names[1]
		if d.Full != grown || (grown && !strings.Contains(d.FullReason, "size changed")) {
			t.Errorf("after growing disk %s: disk %s full=%v reason %q", e.names[1], d.Name, d.Full, d.FullReason)
		}
	}
}

func TestBackupRejectedChangeIDFallsBackToFull(t *testing.T) {
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	file := backupd.JobOptions{Transports: []string{"file"}}
	first := e.mustBackup(t, file).Point
	// A point whose stored changeId has the right epoch but a sequence
	// number from the future: the server refuses it.
	ctx := context.Background()
	sess, err := e.repo.BeginPoint(ctx, "vm1", blockmap.PointOptions{Consistency: first.Consistency, Meta: first.Meta})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range first.Disks {
		m, _ := backupd.ReadDiskMeta(d)
		m.ChangeID = vsphere.ChangeIDEpoch(m.ChangeID) + "/999999"
		b, _ := json.Marshal(m)
		if _, err := sess.AddDisk(ctx, d.Name, d.Size, blockmap.DiskOptions{Meta: b}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sess.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	e.write(t, 2)
	res := e.mustBackup(t, file)
	for _, d := range res.Disks {
		if !d.Full || !strings.Contains(d.FullReason, "rejected") {
			t.Errorf("disk %s with a refused changeId: full=%v reason %q", d.Name, d.Full, d.FullReason)
		}
	}
}

func TestBackupCleansStaleHotAddAndSnapshot(t *testing.T) {
	e := newFaultEnv(t, esxsim.VMSpec{}, "cairn-proxy")
	ctx := context.Background()
	vm, err := e.conn.FindVM(ctx, "vm1")
	if err != nil {
		t.Fatal(err)
	}
	// what a killed hotadd run leaves: a cairn snapshot whose disk is
	// still attached to the proxy
	snap, err := vm.CreateSnapshot(ctx, vsphere.SnapshotPrefix+"killed", vsphere.QuiesceOff)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := e.conn.FindProxy(ctx, "cairn-proxy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.Attach(ctx, snap.Disks[0].FileName); err != nil {
		t.Fatal(err)
	}
	res := e.mustBackup(t, backupd.JobOptions{Transports: []string{"hotadd"}, ProxyVM: "cairn-proxy", HotAddDevice: simHotAdd(e.sim)})
	if res.Disks[0].Transport != "hotadd" {
		t.Errorf("transport %s", res.Disks[0].Transport)
	}
	disks, err := e.sim.Disks("cairn-proxy")
	if err != nil {
		t.Fatal(err)
	}
	if len(disks) != 0 {
		t.Errorf("proxy still has %d disks attached: %+v", len(disks), disks)
	}
}

// TestBackupHotAddDetachesOnFailure fails a hotadd backup after the disk
// was attached to the proxy: once when the device cannot be found, once
// when the job is cancelled while it reads. Each time the disk must be
// detached from the proxy and the snapshot removed, and no point stored.
func TestBackupHotAddDetachesOnFailure(t *testing.T) {
	e := newFaultEnv(t, esxsim.VMSpec{}, "cairn-proxy")
	attached := 0
	lost := func(ctx context.Context, proxy string, d vsphere.HotAdded) (string, error) {
		attached++
		return "", errors.New("no such device under /dev/disk/by-id")
	}
	opts := backupd.JobOptions{Transports: []string{"hotadd"}, ProxyVM: "cairn-proxy", HotAddDevice: lost}
	clean := func(what string) {
		t.Helper()
		disks, err := e.sim.Disks("cairn-proxy")
		if err != nil {
			t.Fatal(err)
		}
		if len(disks) != 0 {
			t.Errorf("%s: the proxy still has %d disks attached: %+v", what, len(disks), disks)
		}
		e.noSnapshots(t)
		if n := e.points(t); n != 0 {
			t.Fatalf("%s: %d points stored", what, n)
		}
	}
	if _, err := e.backup(opts); err == nil || attached == 0 {
		t.Fatalf("backup with the device lost: %v after %d attaches", err, attached)
	}
	clean("device lost")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts.HotAddDevice = simHotAdd(e.sim)
	opts.Progress = func(vm, disk string, total int64) (func(int64), func()) {
		return func(int64) { cancel() }, func() {}
	}
	if _, err := backupd.BackupVM(ctx, e.repo, e.conn, "vm1", opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("backup cancelled while reading: %v, want context.Canceled", err)
	}
	clean("cancelled")
	opts.Progress = nil
	e.mustBackup(t, opts)
}

func TestBackupTransportFallback(t *testing.T) {
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	// hotadd without a proxy and a broken nbd command fail to open; file works
	opts := backupd.JobOptions{Transports: []string{"hotadd", "nbd", "file"}, NBDCommand: "/nonexistent/nbd-server {socket}"}
	res := e.mustBackup(t, opts)
	for _, d := range res.Disks {
		if d.Transport != "file" {
			t.Errorf("disk %s used %s", d.Name, d.Transport)
		}
	}
}

// TestBackupUnchangedDiskOpensNoTransport: when CBT reports no change, the
// disk is not opened at all (a broken NBD command is never started).
func TestBackupUnchangedDiskOpensNoTransport(t *testing.T) {
	e := newFaultEnv(t, esxsim.VMSpec{}, "")
	first := e.mustBackup(t, backupd.JobOptions{Transports: []string{"file"}})
	res := e.mustBackup(t, nbdOpts("/nonexistent/nbd-server {socket}"))
	for _, d := range res.Disks {
		if d.Full || d.BytesRead != 0 || d.Transport != "" {
			t.Errorf("unchanged disk %s: %+v", d.Name, d)
		}
		prev, _ := first.Point.Disk(d.Name)
		pm, _ := backupd.ReadDiskMeta(prev)
		if d.ChangeID == "" || pm.ChangeID == "" {
			t.Errorf("disk %s: no changeId stored", d.Name)
		}
	}
}
