package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
	"github.com/cairnbackup/cairn/internal/rgwtest"
	"github.com/cairnbackup/cairn/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(rgwtest.Main(m)) }

// TestReplicateConfig: the replicate: section is parsed, and bad ones are
// refused with the line and what to write instead.
func TestReplicateConfig(t *testing.T) {
	base := "repository: /r\nvcenters: [{name: v, url: https://vc/sdk, credentials: /c}]\njobs:\n  - name: j\n    vcenter: v\n    vms: [a]\n    schedule: 1h\n"
	ok, err := ParseConfig("c.yaml", []byte(base+"    replicate: {remote: off, schedule: \"0 3 * * *\", after_backup: true, retention: {keep_daily: 30}, verify: 168h, verify_sample: 10%}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rc := ok.Jobs[0].Replicate
	if rc == nil || rc.Remote != "off" || rc.Schedule.String() != "0 3 * * *" || !rc.AfterBackup || rc.Retention.KeepDaily != 30 || rc.Verify == nil || rc.VerifySample != 10 {
		t.Fatalf("parsed %+v", rc)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"    replicate: {remote: off}\n", "say when"},
		{"    replicate: {schedule: 1h}\n", `missing "remote"`},
		{"    replicate: {remote: off, schedule: soon}\n", "schedule"},
		{"    replicate: {remote: \"../x\", schedule: 1h}\n", "remote"},
		{"    replicate: {remote: off, after_backup: maybe}\n", "after_backup: want true or false"},
		{"    replicate: {remote: off, schedule: 1h, retention: {keep_daily: -1}}\n", "keep_daily"},
		{"    replicate: {remote: off, schedule: 1h, verify_sample: 5%}\n", "verify_sample needs verify"},
		{"    replicate: {remote: off, schedule: 1h, verify: 1h, verify_sample: 150%}\n", "percentage"},
		{"    replicate: {remote: off, schedule: 1h, bucket: b}\n", `unknown key "bucket"`},
	} {
		_, err := ParseConfig("c.yaml", []byte(base+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "c.yaml:8") {
			t.Errorf("%s: %v, want an error at c.yaml:8 saying %q", strings.TrimSpace(tc.yaml), err, tc.want)
		}
	}
}

// replicateConfig: job web replicates web-* to remote "off" every hour
// (so at start) and prunes the remote to the newest point of each VM; the
// remote is verified at start as well. No backup runs during the test.
const replicateConfig = simConfigHeader + `jobs:
  - name: web
    vcenter: sim
    vms: ["web-*"]
    schedule: "0 0 1 1 *"
    replicate:
      remote: off
      schedule: 1h
      retention: {keep_last: 1}
      verify: 1h
`

// TestServeReplicate runs a server whose job replicates on a schedule to
// the real RGW: the run is listed by /api/v1/replications with what it
// uploaded, the remote's points by /api/v1/remotes/off/points (the
// remote's retention applied), the metrics count bytes and objects, a
// clean remote verify counts no errors, the lag of each VM is 0 and
// grows to the age of a new local point that is not offsite yet; an
// unknown remote is a 404 and the API needs the token.
func TestServeReplicate(t *testing.T) {
	_, opener := testRemote(t)
	t0 := time.Now().Add(-72 * time.Hour).UTC().Truncate(time.Second)
	var local []blockmap.Point
	a := startAPIServer(t, apiSim(t), replicateConfig, func(s *Server) {
		s.remotes = opener
		repo, err := blockmap.Open(context.Background(), s.Config().Repository, blockmap.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		for i, vm := range []string{"web-1", "web-1", "web-2", "db-1"} {
			local = append(local, writeTestPoint(t, repo, vm, t0.Add(time.Duration(i)*time.Hour), byte(i+1)))
		}
	})
	var runs []ReplicationRecord
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, body := a.do(t, http.MethodGet, "/api/v1/replications", "", nil)
		if code != http.StatusOK {
			t.Fatalf("/api/v1/replications: %d %s", code, body)
		}
		var out struct {
			Replications []ReplicationRecord `json:"replications"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		runs = out.Replications
		done := 0
		for _, r := range runs {
			if r.State != StateRunning {
				done++
			}
		}
		if done == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replication and verify did not end: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var rep, ver *ReplicationRecord
	for i := range runs {
		switch runs[i].Kind {
		case "replicate":
			rep = &runs[i]
		case "verify":
			ver = &runs[i]
		}
	}
	// web-1's older point is outside the remote's retention (keep_last:
	// 1): it is not uploaded (it was, and pruned right after, every run).
	if rep == nil || rep.State != StateOK || rep.Replicated != 2 || rep.Pruned != 0 || rep.BytesUploaded <= 0 || rep.Objects < 5 ||
		strings.Join(rep.VMs, ",") != "web-1,web-2" || rep.Trigger != "schedule" {
		t.Fatalf("replication run: %+v", rep)
	}
	// The run is in the repository's job log too (cairn jobs), by its id.
	jobs, err := backupd.NewJobLog(a.repo).List()
	if err != nil {
		t.Fatal(err)
	}
	var logged *backupd.JobRecord
	for i := range jobs {
		if jobs[i].ID == rep.ID {
			logged = &jobs[i]
		}
	}
	if logged == nil || logged.Kind != backupd.JobReplicate || logged.State != backupd.JobOK || logged.Remote != "off" || logged.ServeJob != "web" ||
		strings.Join(logged.VMs, ",") != "web-1,web-2" || logged.Points != 2 || logged.BytesUploaded != rep.BytesUploaded || logged.End.IsZero() {
		t.Errorf("job log record of the replication: %+v (run %+v)", logged, rep)
	}
	if ver == nil || (ver.State != StateOK && !strings.Contains(ver.Error, "damaged")) {
		t.Fatalf("verify run: %+v", ver)
	}
	var loggedVer *backupd.JobRecord
	for i := range jobs {
		if jobs[i].ID == ver.ID {
			loggedVer = &jobs[i]
		}
	}
	if loggedVer == nil || loggedVer.Kind != backupd.JobVerifyRemote || loggedVer.Remote != "off" || loggedVer.ServeJob != "web" {
		t.Errorf("job log record of the remote verify: %+v (run %+v)", loggedVer, ver)
	}
	if got := a.metric(t, "cairn_remote_bytes_uploaded_total"); got != float64(rep.BytesUploaded) {
		t.Errorf("cairn_remote_bytes_uploaded_total = %v, the run uploaded %d", got, rep.BytesUploaded)
	}
	if got := a.metric(t, "cairn_remote_objects_total"); got != float64(rep.Objects) {
		t.Errorf("cairn_remote_objects_total = %v, the run wrote %d", got, rep.Objects)
	}
	if got := a.metric(t, "cairn_remote_verify_errors_total"); got != 0 {
		t.Errorf("cairn_remote_verify_errors_total = %v on a clean remote", got)
	}
	if got := a.metric(t, `cairn_remote_replication_lag_seconds\{remote="off",vm="web-1"\}`); got != 0 {
		t.Errorf("lag of web-1 = %v after it was replicated", got)
	}

	// The remote keeps the newest point of each VM (keep_last: 1); db-1 is
	// not the job's.
	code, body := a.do(t, http.MethodGet, "/api/v1/remotes/off/points", "", nil)
	var rp struct {
		Points []blockmap.Point `json:"points"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rp) != nil {
		t.Fatalf("/api/v1/remotes/off/points: %d %s", code, body)
	}
	var got []string
	for _, p := range rp.Points {
		got = append(got, p.VM+" "+p.ID)
	}
	want := local[1].VM + " " + local[1].ID + "," + local[2].VM + " " + local[2].ID
	if strings.Join(got, ",") != want {
		t.Fatalf("remote points %v, want %s", got, want)
	}
	if code, body := a.do(t, http.MethodGet, "/api/v1/remotes/off/points?vm=web-2", "", nil); code != 200 || strings.Contains(body, local[1].ID) || !strings.Contains(body, local[2].ID) {
		t.Fatalf("points ?vm=web-2: %d %s", code, body)
	}
	if code, body := a.do(t, http.MethodGet, "/api/v1/remotes/nosuch/points", "", nil); code != http.StatusNotFound {
		t.Fatalf("unknown remote: %d %s", code, body)
	}
	// What the remote holds: the two points, in packs.
	code, body = a.do(t, http.MethodGet, "/api/v1/remotes/off/stats", "", nil)
	var rs struct {
		Stats remote.Stats `json:"stats"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rs) != nil || rs.Stats.Points != 2 || len(rs.Stats.VMs) != 2 || rs.Stats.Packs == 0 || rs.Stats.LogicalBytes == 0 {
		t.Fatalf("/api/v1/remotes/off/stats: %d %s", code, body)
	}
	if code, body := a.do(t, http.MethodGet, "/api/v1/remotes/nosuch/stats", "", nil); code != http.StatusNotFound {
		t.Fatalf("stats of an unknown remote: %d %s", code, body)
	}
	for _, path := range []string{"/api/v1/replications", "/api/v1/remotes/off/points", "/api/v1/remotes/off/stats"} {
		if code, _ := a.do(t, http.MethodGet, path, "", map[string]string{"Authorization": "-"}); code != http.StatusUnauthorized {
			t.Fatalf("%s without the token: %d", path, code)
		}
	}

	// A new local point of web-2, two hours old, is not offsite yet: the
	// lag is its age.
	np := writeTestPoint(t, a.s.repo, "web-2", time.Now().Add(-2*time.Hour), 9)
	lag := a.metric(t, `cairn_remote_replication_lag_seconds\{remote="off",vm="web-2"\}`)
	if lag < 2*3600 || lag > 3*3600 {
		t.Fatalf("lag of web-2 with point %s of two hours ago not offsite = %v s", np.ID, lag)
	}
}

// writeTestPoint commits a point of vm with one 1 MiB disk filled with b
// (and a block of random-looking bytes).
func writeTestPoint(t *testing.T, repo *blockmap.Repo, vm string, when time.Time, b byte) blockmap.Point {
	t.Helper()
	ctx := context.Background()
	s, err := repo.BeginPoint(ctx, vm, blockmap.PointOptions{Time: when})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddDisk(ctx, "disk-0", 1<<20, blockmap.DiskOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = b ^ byte(i*7+i/251)
	}
	if _, err := w.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	p, err := s.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testRemote initializes a bucket of the shared RGW as a remote and
// returns its options and an opener that knows it as "off".
func testRemote(t *testing.T) (remote.Options, RemoteOpener) {
	t.Helper()
	c := rgwtest.Shared(t)
	ropts := remote.Options{
		Store:    remote.StoreOptions{Endpoint: c.Endpoint, Bucket: rgwtest.NewBucketName(), AccessKey: c.AccessKey, SecretKey: c.SecretKey, Timeout: 20 * time.Second},
		Secret:   []byte("serve replicate test passphrase"),
		PackSize: 1 << 20,
	}
	if err := remote.Init(context.Background(), ropts); err != nil {
		t.Fatal(err)
	}
	return ropts, func(ctx context.Context, repoDir, name string, _ bool) (*OpenedRemote, error) {
		if name != "off" {
			return nil, ErrUnknownRemote
		}
		rem, err := remote.Open(ctx, ropts)
		if err != nil {
			return nil, err
		}
		return &OpenedRemote{Remote: rem, CacheDir: repoDir + "/remotes/off.cache", Release: func() { rem.Close() }}, nil
	}
}

// TestServeReplicateAfterBackup: a job with replicate: {after_backup:
// true} replicates each point its backup run commits, right after the
// run; the remote point reads back equal to the local one.
func TestServeReplicateAfterBackup(t *testing.T) {
	testutil.RequireTools(t, "nbdkit")
	sim := apiSim(t)
	g, err := sim.Guest("web-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.WriteRandom(0, 0, 512<<10, rand.New(rand.NewPCG(3, 4))); err != nil {
		t.Fatal(err)
	}
	ropts, opener := testRemote(t)
	a := startAPIServer(t, sim, simConfigHeader+`jobs:
  - name: web
    vcenter: sim
    vms: [web-1]
    schedule: 1h
    transports: [nbd]
    nbd_command: nbdkit -t 1 -f -r -U {socket} file {disk_local_path}
    retries: 0
    replicate: {remote: off, after_backup: true}
`, func(s *Server) { s.remotes = opener })
	rep := a.firstReplication(t)
	runs := a.s.Runs()
	if len(runs) != 1 || runs[0].State != StateOK || runs[0].Point == "" {
		t.Fatalf("backup runs: %+v", runs)
	}
	if rep.State != StateOK || rep.Trigger != "after_backup" || rep.Replicated != 1 || strings.Join(rep.VMs, ",") != "web-1" {
		t.Fatalf("replication: %+v", rep)
	}
	rem, err := remote.Open(context.Background(), ropts)
	if err != nil {
		t.Fatal(err)
	}
	defer rem.Close()
	p, err := a.s.repo.ResolvePoint(context.Background(), "web-1", runs[0].Point)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Disks {
		rd, err := rem.OpenDisk(context.Background(), "web-1", p.ID, d.Name, 0)
		if err != nil {
			t.Fatal(err)
		}
		ld, err := a.s.repo.OpenDisk(context.Background(), p, d.Name)
		if err != nil {
			t.Fatal(err)
		}
		rb, lb := make([]byte, d.Size), make([]byte, d.Size)
		if _, err := rd.ReadAt(rb, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if _, err := ld.ReadAt(lb, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		ld.Close()
		if !bytes.Equal(rb, lb) || bytes.Count(lb, []byte{0}) == len(lb) {
			t.Fatalf("disk %s: the remote point differs from the local one (or is empty)", d.Name)
		}
	}
}

// firstReplication waits (up to 2 minutes) for the server's first
// replication run to end and returns it.
func (a *apiServer) firstReplication(t *testing.T) ReplicationRecord {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if rs := a.s.Replications(); len(rs) > 0 && rs[0].State != StateRunning {
			return rs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replication ended; runs: %+v", a.s.Runs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
