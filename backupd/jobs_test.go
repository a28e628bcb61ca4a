package backupd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// TestJobLogRotation: the log is rotated when it reaches its limit, keeps
// two files at most, and List merges them (a job that began before a
// rotation and ended after it shows its final record), also when several
// writers append at once.
func TestJobLogRotation(t *testing.T) {
	l := NewJobLog(t.TempDir())
	l.rotateAt = 4 << 10
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	if err := l.Append(JobRecord{ID: "long", VM: "vm", Start: start, State: JobRunning, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				r := JobRecord{ID: fmt.Sprintf("j%d-%02d", w, i), VM: "vm", Start: start.Add(time.Duration(i) * time.Second), State: JobOK}
				if err := l.Append(r); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 5; i++ {
		if err := l.Append(JobRecord{ID: fmt.Sprintf("last-%d", i), VM: "vm", Start: start.Add(time.Hour), State: JobOK}); err != nil {
			t.Fatal(err)
		}
	}
	// The long job ends after the file it began in was rotated.
	if err := l.Append(JobRecord{ID: "long", VM: "vm", Start: start, End: start.Add(time.Hour), State: JobOK}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{l.path(), l.oldPath()} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("want %s: %v", p, err)
		}
		if st.Size() > l.rotateAt+1024 {
			t.Errorf("%s has %d bytes, rotation at %d", p, st.Size(), l.rotateAt)
		}
	}
	recs, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]JobRecord{}
	for _, r := range recs {
		ids[r.ID] = r
	}
	if r, ok := ids["long"]; !ok || r.State != JobOK {
		t.Errorf("the job begun before the rotation: %+v (present %v)", r, ok)
	}
	// 161 records of ~130 bytes in two files of at most ~4 KiB: the oldest
	// are gone, the newest are all there.
	if len(recs) >= 161 || len(recs) < 20 {
		t.Errorf("%d records listed, want the newest only (fewer than 161, at least 20)", len(recs))
	}
	for i := 0; i < 5; i++ {
		if _, ok := ids[fmt.Sprintf("last-%d", i)]; !ok {
			t.Errorf("job last-%d, among the newest, is missing", i)
		}
	}
}

// TestJobDescribe: cairn jobs names each kind of job beside its VMs, and
// a record written before kinds and remotes existed reads as a backup.
func TestJobDescribe(t *testing.T) {
	many := JobRecord{Kind: JobReplicate, Remote: "offsite"}
	many.SetVMs([]string{"e", "b", "a", "d", "b"})
	one := JobRecord{Kind: JobPull, Remote: "offsite"}
	one.SetVMs([]string{"web"})
	var old JobRecord
	if err := json.Unmarshal([]byte(`{"id":"x","vm":"web","start":"2026-11-01T01:00:00Z","state":"ok","bytes_read":1,"bytes_written":2}`), &old); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		r    JobRecord
		want string
	}{
		{old, "web"},
		{JobRecord{VM: "web", Kind: JobBackup}, "web"},
		{JobRecord{VM: "web", Kind: JobImport}, "web (import)"},
		{JobRecord{VM: "web", Kind: JobRestore, Target: "web-copy"}, "web (restore to web-copy)"},
		{JobRecord{VM: "web", Kind: JobVerify}, "web (verify-source)"},
		{many, "a, b, d +1 more (replicate to offsite)"},
		{one, "web (pull from offsite)"},
		{JobRecord{Kind: JobReplicate, Remote: "offsite"}, "- (replicate to offsite)"},
		{JobRecord{Kind: JobVerifyRemote, Remote: "offsite"}, "- (verify of offsite)"},
		{JobRecord{VM: "web", Kind: JobInstant, Action: "start", Target: "web-instant", Datastore: "cairn-web-p1"}, "web (instant start of web-instant)"},
		{JobRecord{VM: "web", Kind: JobInstant, Action: "start"}, "web (instant start)"}, // failed before a VM was made
		{JobRecord{VM: "web", Kind: JobInstant, Action: "migrate", Target: "web-instant", Datastore: "ds1"}, "web (instant migrate of web-instant to ds1)"},
		{JobRecord{VM: "web", Kind: JobInstant, Action: "stop", Target: "web-instant", Datastore: "cairn-web-p1"}, "web (instant stop of web-instant)"},
	} {
		if got := tc.r.Describe(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
	if one.VM != "web" || many.VM != "" || len(many.VMs) != 4 {
		t.Errorf("SetVMs: one %q %v, many %q %v", one.VM, one.VMs, many.VM, many.VMs)
	}
}

// TestJobEndState: a job whose context was cancelled (Ctrl-C, SIGTERM, a
// stopping server) ends cancelled, with its error's text; one that timed
// out, or failed while its context was live, ends failed.
func TestJobEndState(t *testing.T) {
	boom := errors.New("nbd read: connection reset")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	timedOut, stop := context.WithTimeout(context.Background(), 0)
	defer stop()
	<-timedOut.Done()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"ok", cancelled, nil, JobOK},
		{"failed", context.Background(), boom, JobFailed},
		{"cancelled", cancelled, boom, JobCancelled},
		{"cancelled twice", cancelled, Cancelled(cancelled, boom), JobCancelled},
		{"timed out", timedOut, boom, JobFailed},
		{"context.Canceled from a live context", context.Background(), context.Canceled, JobFailed},
	} {
		err := Cancelled(tc.ctx, tc.err)
		if got := EndState(err); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
		if tc.err != nil && (err.Error() != tc.err.Error() || !errors.Is(err, tc.err)) {
			t.Errorf("%s: error %q no longer the job's own", tc.name, err)
		}
	}
	dir := t.TempDir()
	end := StartJob(dir, JobRecord{Kind: JobImport, VM: "web"})
	end(Cancelled(cancelled, boom), nil)
	recs, err := NewJobLog(dir).List()
	if err != nil || len(recs) != 1 || recs[0].State != JobCancelled || recs[0].Error != boom.Error() {
		t.Fatalf("StartJob of a cancelled job recorded %+v (%v)", recs, err)
	}
}
