package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestZZMeasureRemote(t *testing.T) {
	if os.Getenv("CAIRN_MEASURE") == "" {
		t.Skip("measurement")
	}
	f := newRemoteFixture(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	img := filepath.Join(dir, "a.img")
	makeImage(t, img, 4<<30)
	writeRandom(t, img, 0, 1<<30, 1)
	writeRandom(t, img, 2<<30, 1<<30, 2)
	mustCairn(t, "--repo", repo, "import", "--vm", "a", "--disk", "d0", img)
	f.add(t, repo, "off", "--pack-size", "33554432")
	mustCairn(t, "--repo", repo, "remote", "init", "off")
	run := func(args ...string) {
		cmd := exec.Command(buildCairn(t), args...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		t.Logf("%v: %v, max RSS %d MiB\n%s", args[2:4], time.Since(start), ru.Maxrss/1024, out)
	}
	run("--repo", repo, "replicate", "--remote", "off")
	// reference: the same 2 GiB of data as one object
	data := filepath.Join(dir, "data")
	writeRandom(t, data, 0, 2<<30, 3)
	start := time.Now()
	if _, err := f.s3.FPutObject(context.Background(), f.bucket, "ref/data", data, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("minio-go FPutObject of 2 GiB: %v", time.Since(start))
	// 1 % changed
	writeRandom(t, img, 0, 40<<20, 4)
	mustCairn(t, "--repo", repo, "import", "--vm", "a", "--disk", "d0", img)
	run("--repo", repo, "replicate", "--remote", "off")
	repo2 := filepath.Join(dir, "repo2")
	mustCairn(t, "--repo", repo2, "init")
	f.add(t, repo2, "off")
	run("--repo", repo2, "pull", "--remote", "off")
}
