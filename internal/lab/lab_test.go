package lab

import (
	"context"
	"github.com/cairnbackup/cairn/backupd/serve"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestLab(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := Start(ctx, Options{Dir: dir, VMs: 2, DiskSize: 64 << 20, Interval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	if len(l.VMs) != 2 || l.VMs[0].Name != "lab-vm-1" || len(l.VMs[0].Disks) != 1 || len(l.VMs[1].Disks) != 2 {
		t.Fatalf("VMs: %+v", l.VMs)
	}
	if !strings.HasPrefix(l.URL, "https://127.0.0.1:") || !strings.HasSuffix(l.URL, "/sdk") {
		t.Errorf("URL %q", l.URL)
	}
	st, err := os.Stat(l.CredentialsFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", st, err)
	}
	creds, _ := os.ReadFile(l.CredentialsFile)
	if string(creds) != l.User+"\n"+l.Password+"\n" {
		t.Errorf("credentials file holds %q", creds)
	}
	var cfg ServeConfig
	raw, err := os.ReadFile(filepath.Join(dir, "cairn.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("cairn.yaml: %v\n%s", err, raw)
	}
	if cfg.Repository != filepath.Join(dir, "repo") || cfg.Mount != filepath.Join(dir, "mnt") ||
		len(cfg.VCenters) != 1 || cfg.VCenters[0].URL != l.URL || cfg.VCenters[0].Thumbprint != l.Thumbprint ||
		cfg.VCenters[0].Credentials != l.CredentialsFile || len(cfg.Jobs) != 1 || len(cfg.Jobs[0].Tags) != 1 || cfg.Jobs[0].Tags[0] != Tag {
		t.Errorf("cairn.yaml:\n%s", raw)
	}
	if _, err := serve.ParseConfig("cairn.yaml", raw); err != nil {
		t.Errorf("cairn serve refuses the lab's cairn.yaml: %v\n%s", err, raw)
	}
	if !strings.Contains(string(raw), `thumbprint: "`+l.Thumbprint+`"`) {
		t.Errorf("thumbprint not quoted:\n%s", raw)
	}

	// Let the writers run a few batches, stop them, and compare every
	// disk with what the journal says it holds.
	deadline := time.Now().Add(20 * time.Second)
	for l.guests[0].batchDone() < 5 || l.guests[1].batchDone() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("guest writers made only %d and %d batches", l.guests[0].batchDone(), l.guests[1].batchDone())
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.cancel()
	l.wg.Wait()

	for i, vm := range l.VMs {
		entries, err := ReadJournal(vm.Journal)
		if err != nil {
			t.Fatal(err)
		}
		last := l.guests[i].batch
		if bs := Batches(entries); bs[len(bs)-1] != last {
			t.Errorf("%s: journal ends at batch %d, writer at %d", vm.Name, bs[len(bs)-1], last)
		}
		for d, disk := range vm.Disks {
			table, got := readTree(t, disk.LocalPath, 1)
			want := State(entries, d, 1, last)
			if len(want) < 50 {
				t.Fatalf("%s disk %d: journal lists only %d files", vm.Name, d, len(want))
			}
			compareStates(t, got, want)
			if d == 1 {
				want2 := State(entries, 1, 2, last)
				if haveMkfsExt4() != (len(want2) > 0) || (len(want2) > 0 && len(table.Partitions) != 2) {
					t.Fatalf("%s data disk: mkfs.ext4 %v, %d ext4 files in the journal, table %+v", vm.Name, haveMkfsExt4(), len(want2), table)
				}
				if len(want2) > 0 {
					if p := table.Partitions[1]; p.MBRType != 0x83 || p.Size != ext4Size {
						t.Errorf("%s data disk partition 2: %+v", vm.Name, p)
					}
					_, got2 := readTree(t, disk.LocalPath, 2)
					compareStates(t, got2, want2)
				}
			}
			if d == 0 {
				if table.Type != "gpt" {
					t.Errorf("%s disk 0: table %s", vm.Name, table.Type)
				}
				gen := want[GenerationFile]
				if gen.SHA256 != sha256Hex([]byte(strconv.Itoa(last)+"\n")) {
					t.Errorf("%s: generation file does not hold %d", vm.Name, last)
				}
			}
		}
		// The writer adds and deletes documents, and changes old ones.
		var added, deleted, changed int
		for _, e := range entries {
			switch {
			case e.Batch == 0:
			case e.Deleted:
				deleted++
			case strings.Contains(e.Path, "/new-"):
				added++
			case strings.Contains(e.Path, "/doc-"):
				changed++
			}
		}
		if added < 5 || changed < 5 || deleted < 1 {
			t.Errorf("%s: %d added, %d changed, %d deleted", vm.Name, added, changed, deleted)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "datastore")); !os.IsNotExist(err) {
		t.Errorf("datastore left behind: %v", err)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{Dir: t.TempDir(), VMs: -1},
		{Dir: t.TempDir(), DiskSize: 10 << 20},
		{Dir: t.TempDir(), Interval: time.Nanosecond},
	} {
		if l, err := Start(context.Background(), o); err == nil {
			l.Close()
			t.Errorf("%+v accepted", o)
		}
	}
}
