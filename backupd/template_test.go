package backupd

import (
	"errors"
	"strings"
	"testing"
)

func TestExpandTemplate(t *testing.T) {
	vals := map[string]string{"socket": "/run/s.sock", "disk_local_path": "/ds/vm 1/vm-flat.vmdk", "vm": "web", "disk": "scsi0-0"}
	calls := map[string]int{}
	value := func(n string) (string, error) {
		calls[n]++
		v, ok := vals[n]
		if !ok {
			return "", errors.New("no value")
		}
		return v, nil
	}
	got, err := expandTemplate("qemu-nbd -r  -k {socket} {disk_local_path} --log=/l/{vm}-{disk}.log", value)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"qemu-nbd", "-r", "-k", "/run/s.sock", "/ds/vm 1/vm-flat.vmdk", "--log=/l/web-scsi0-0.log"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if calls["thumbprint"] != 0 || calls["password_file"] != 0 {
		t.Errorf("unused placeholders were computed: %v", calls)
	}
	// A value with braces (or a placeholder's name) is not expanded again.
	vals["disk_local_path"] = "/vmfs/volumes/ds1/web{1}/{disk}-flat.vmdk"
	if got, err := expandTemplate("qemu-nbd {disk_local_path}", value); err != nil || got[1] != vals["disk_local_path"] {
		t.Errorf("value with braces: %q, %v", got, err)
	}
	for _, bad := range []string{"", "nbdkit {nosuch}", "nbdkit {socket", "nbdkit {thumbprint}"} {
		if _, err := expandTemplate(bad, value); err == nil {
			t.Errorf("template %q accepted", bad)
		}
	}
}

func FuzzExpandTemplate(f *testing.F) {
	for _, s := range []string{DefaultNBDCommand, "a {socket}{disk} b", "{", "}{", "{{socket}}", "x {vm", "a}b {vm}}"} {
		f.Add(s)
	}
	// Plain values, and values full of braces (a datastore folder named
	// web{1}): the words must be the same but for the values.
	plain := func(n string) (string, error) { return "<" + n + ">", nil }
	braced := func(n string) (string, error) { return "{" + n + "}", nil }
	f.Fuzz(func(t *testing.T, tmpl string) {
		words, err := expandTemplate(tmpl, plain)
		if err != nil {
			return
		}
		for _, w := range words {
			if strings.Contains(w, "{") {
				t.Fatalf("placeholder left in %q from %q", w, tmpl)
			}
		}
		got, err := expandTemplate(tmpl, braced)
		if err != nil {
			t.Fatalf("template %q: braces in values broke the expansion: %v", tmpl, err)
		}
		norm := strings.NewReplacer("{", "<", "}", ">")
		if a, b := norm.Replace(strings.Join(words, " ")), norm.Replace(strings.Join(got, " ")); a != b {
			t.Fatalf("template %q: %q with plain values, %q with braced ones", tmpl, a, b)
		}
	})
}

func TestParseTransports(t *testing.T) {
	got, err := ParseTransports(" hotadd, nbd,file ")
	if err != nil || strings.Join(got, ",") != "hotadd,nbd,file" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"", "san", "nbd,,ssh"} {
		if _, err := ParseTransports(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestJobLogLastRecordWinsAndInterrupted(t *testing.T) {
	l := NewJobLog(t.TempDir())
	if jobs, err := l.List(); err != nil || len(jobs) != 0 {
		t.Fatalf("empty log: %v %v", jobs, err)
	}
	must := func(r JobRecord) {
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	must(JobRecord{ID: "a", VM: "web", State: JobRunning})
	must(JobRecord{ID: "a", VM: "web", State: JobOK, Point: "p1", BytesRead: 10})
	must(JobRecord{ID: "b", VM: "db", State: JobRunning, PID: 1 << 30}) // no such process
	jobs, err := l.List()
	if err != nil || len(jobs) != 2 {
		t.Fatalf("%v %v", jobs, err)
	}
	for _, j := range jobs {
		switch j.ID {
		case "a":
			if j.State != JobOK || j.Point != "p1" || j.BytesRead != 10 {
				t.Errorf("job a: %+v", j)
			}
		case "b":
			if j.State != JobInterrupted {
				t.Errorf("job b of a dead process: %s", j.State)
			}
		}
	}
}
