package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runCairnGuarded runs cairn; a run still going after limit is killed and
// reported as hung (a guard against hangs, not a timing assertion). It
// returns the result and the peak RSS in bytes.
func runCairnGuarded(t *testing.T, limit time.Duration, signalAfter time.Duration, args ...string) (cairnResult, int64) {
	t.Helper()
	cmd := exec.Command(buildCairn(t), args...)
	cmd.Env = append(os.Environ(), "CAIRN_REPO=")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := watchRSS(cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var sig <-chan time.Time
	if signalAfter > 0 {
		sig = time.After(signalAfter)
	}
	guard := time.After(limit)
	for {
		select {
		case err := <-done:
			res := cairnResult{stdout: so.String(), stderr: se.String()}
			if ee, ok := err.(*exec.ExitError); ok {
				res.code = ee.ExitCode()
				if res.code < 0 {
					res.code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
				}
			} else if err != nil {
				t.Fatal(err)
			}
			return res, w.Peak()
		case <-sig:
			cmd.Process.Signal(syscall.SIGTERM)
			sig = nil
		case <-guard:
			cmd.Process.Kill()
			<-done
			t.Fatalf("cairn %s hung (killed after %v); stderr: %s", strings.Join(args, " "), limit, se.String())
		}
	}
}

// TestImportInputChecks feeds import the inputs the issue found wrong: the
// README's own --changed example, point times that cannot be right,
// changed areas past the disk's end, an endless --changed-file, a FIFO as
// source and as --changed-file. Each ends with the right outcome, a clear
// error and no point, in bounded memory.
func TestImportInputChecks(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	src := filepath.Join(dir, "web01-0.img")
	makeImage(t, src, 16<<20)
	writeRandom(t, src, 0, 16<<20, 4)
	mustCairn(t, "--repo", repo, "init")
	mustCairn(t, "--repo", repo, "import", "--vm", "web01", "--disk", "scsi0-0", src)
	points := func() int { return len(listPoints(t, repo, "web01")) }

	t.Run("README changed example", func(t *testing.T) {
		writeRandom(t, src, 1048576, 65536, 5)
		writeRandom(t, src, 8388608, 131072, 6)
		mustCairn(t, "--repo", repo, "import", "--vm", "web01", "--disk", "scsi0-0", "--changed", "1048576:65536,8388608:131072", src)
		pts := listPoints(t, repo, "web01")
		if d, _ := pts[len(pts)-1].Disk("scsi0-0"); d.ReadBytes != 65536+131072 || d.Full {
			t.Errorf("the README's example read %d bytes (full %v), want the two areas: %d", d.ReadBytes, d.Full, 65536+131072)
		}
		if exportSHA(t, repo, "web01", "latest", "scsi0-0") != fileSHA(t, src) {
			t.Errorf("point after the README's example differs from the source")
		}
	})
	before := points()

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"year 1", []string{"--time", "0001-01-01T00:00:00Z"}, "before 1970"},
		{"year 9999", []string{"--time", "9999-01-01T00:00:00Z"}, "in the future"},
		{"area past the end", []string{"--changed", fmt.Sprintf("%d:%d", 16<<20-4096, 8192)}, "past the disk's end (16777216 bytes)"},
		{"area beyond the end", []string{"--changed", "0:4096,1099511627776:4096"}, "changed area 1099511627776:4096 of disk scsi0-0"},
		{"endless changed file", []string{"--changed-file", "/dev/zero"}, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--repo", repo, "import", "--vm", "web01", "--disk", "scsi0-0"}, c.args...)
			res, rss := runCairnGuarded(t, 2*time.Minute, 0, append(args, src)...)
			requireOneLineError(t, res, c.want)
			if rss > 1<<30 {
				t.Errorf("peak RSS %d MiB", rss>>20)
			}
			t.Logf("peak RSS %d MiB", rss>>20)
		})
	}
	t.Run("FIFO source", func(t *testing.T) {
		res, _ := runCairnGuarded(t, 2*time.Minute, 0, "--repo", repo, "import", "--vm", "web01", "--disk", "scsi0-0", fifo)
		requireOneLineError(t, res, "is a FIFO")
	})
	t.Run("FIFO changed file without writer, SIGTERM", func(t *testing.T) {
		res, _ := runCairnGuarded(t, 2*time.Minute, 2*time.Second, "--repo", repo, "import", "--vm", "web01", "--disk", "scsi0-0", "--changed-file", fifo, src)
		if res.code == 0 {
			t.Fatalf("import waiting for a FIFO's writer succeeded after SIGTERM: %s", res.stdout)
		}
		if !strings.Contains(res.stderr, "FIFO") && res.code != 128+int(syscall.SIGTERM) {
			t.Errorf("exit %d, stderr %q", res.code, res.stderr)
		}
	})
	t.Run("FIFO changed file with a writer", func(t *testing.T) {
		go func() {
			if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				f.WriteString("0:65536\n")
				f.Close()
			}
		}()
		res, _ := runCairnGuarded(t, 2*time.Minute, 0, "--repo", repo, "import", "--vm", "web01", "--disk", "scsi0-0", "--changed-file", fifo, src)
		if res.code != 0 {
			t.Fatalf("import with a changed list from a FIFO: %s", res.stderr)
		}
		before++
	})
	if n := points(); n != before {
		t.Errorf("%d points after the refused imports, want %d", n, before)
	}
	checkClean(t, repo)
}
