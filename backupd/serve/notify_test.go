package serve

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/notify"
	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// TestTellBackupDone: a committed backup is a warning when quiescing fell
// back or a disk was read whole for another reason than being new, and
// info otherwise; the webhook gets which.
func TestTellBackupDone(t *testing.T) {
	var mu sync.Mutex
	var got []notify.Payload
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p notify.Payload
		_ = json.Unmarshal(b, &p)
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}))
	defer srv.Close()
	s := &Server{log: slog.Default()}
	s.startNotifier(&Config{Notify: &NotifyConfig{Targets: []notify.TargetConfig{{Name: "w", Webhook: &notify.WebhookConfig{URL: srv.URL},
		Filter: notify.Filter{On: []notify.Severity{notify.Failure, notify.Warning, notify.Info}}}}}})
	defer s.stopNotifier()
	cases := []struct {
		quiesce, consistency string
		disk                 backupd.DiskResult
		want                 notify.Kind
		error                string
		warnings             []string
	}{
		{vsphere.QuiesceAuto, vsphere.ConsistencyQuiesced, backupd.DiskResult{Name: "d0"}, notify.BackupOK, "", nil},
		{vsphere.QuiesceAuto, vsphere.ConsistencyCrash, backupd.DiskResult{Name: "d0"}, notify.BackupWarning, "quiescing failed: the point is crash-consistent", nil},
		{vsphere.QuiesceOff, vsphere.ConsistencyCrash, backupd.DiskResult{Name: "d0"}, notify.BackupOK, "", nil},
		{vsphere.QuiesceAuto, vsphere.ConsistencyQuiesced, backupd.DiskResult{Name: "d0", Full: true, FullReason: "first backup of this VM"}, notify.BackupOK, "", nil},
		{vsphere.QuiesceAuto, vsphere.ConsistencyQuiesced, backupd.DiskResult{Name: "d0", Full: true, FullReason: "stored changeId rejected by vSphere (reset)"}, notify.BackupWarning,
			"disk d0 read whole: stored changeId rejected by vSphere (reset)", nil},
		{vsphere.QuiesceAuto, vsphere.ConsistencyQuiesced, backupd.DiskResult{Name: "d0"}, notify.BackupWarning,
			"disk scsi0-1 (Hard disk 2) not backed up: independent disk", []string{"disk scsi0-1 (Hard disk 2) not backed up: independent disk"}},
	}
	for i, c := range cases {
		job := Job{Name: "j", Quiesce: c.quiesce}
		r := &RunRecord{VM: "vm" + string(rune('a'+i))}
		s.tellBackupDone(job, r, &backupd.Result{PointID: "p", Consistency: c.consistency, Disks: []backupd.DiskResult{c.disk}, Warnings: c.warnings})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == len(cases) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered", n, len(cases))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, c := range cases {
		var p notify.Payload
		for _, g := range got {
			if g.VM == "vm"+string(rune('a'+i)) {
				p = g
			}
		}
		if p.Kind != c.want || p.Error != c.error {
			t.Errorf("case %d: %s %q, want %s %q", i, p.Kind, p.Error, c.want, c.error)
		}
	}
}

// TestNotifierReload: a reload keeps what is known of a target of the
// same name (its last failure stays in cairn status) and the RPO state.
func TestNotifierReload(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	defer srv.Close()
	cfg := func(name string) *Config {
		return &Config{Notify: &NotifyConfig{Targets: []notify.TargetConfig{{Name: name, Webhook: &notify.WebhookConfig{URL: srv.URL}}}}}
	}
	s := &Server{log: slog.Default()}
	s.startNotifier(cfg("hook"))
	defer s.stopNotifier()
	rpo := s.note.rpo
	s.tell(notify.Event{Kind: notify.VerifyDamage, Severity: notify.Failure, Error: "x"})
	deadline := time.Now().Add(20 * time.Second)
	for s.NotifyStatus()[0].Failed != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the event was not given up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.startNotifier(cfg("hook"))
	if st := s.NotifyStatus(); len(st) != 1 || st[0].Failed != 1 || st[0].LastError == "" || s.note.rpo != rpo {
		t.Errorf("after a reload: %+v", st)
	}
	s.startNotifier(cfg("other"))
	if st := s.NotifyStatus(); len(st) != 1 || st[0].Failed != 0 || st[0].Name != "other" {
		t.Errorf("a new target: %+v", st)
	}
}
