package blockmap

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// TestReadAfterKilledWriter kills (SIGKILL) a child process while it holds
// the index open for writing with a fresh write-ahead log: read-only opens
// cannot replay such a log, so readers must recover it and still work.
func TestReadAfterKilledWriter(t *testing.T) {
	if dir := os.Getenv("CAIRN_TEST_HOLD_INDEX"); dir != "" {
		r, err := Open(context.Background(), dir, Options{})
		if err != nil {
			os.Exit(2)
		}
		r.update(context.Background(), func(db *badger.DB) error {
			db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("x-test"), []byte("1")) })
			os.WriteFile(filepath.Join(dir, "holding"), nil, 0o644)
			time.Sleep(time.Minute) // killed here
			return nil
		})
		os.Exit(0)
	}
	r := newTestRepo(t)
	d := &modelDisk{name: "d0", data: make([]byte, 3*testBS), changed: map[int64]bool{}}
	d.data[5] = 1
	backup(t, r, "vm", []*modelDisk{d}, true, time.Time{})
	r.Close()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestReadAfterKilledWriter$")
	cmd.Env = append(os.Environ(), "CAIRN_TEST_HOLD_INDEX="+r.Dir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(r.Dir(), "holding")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("child never opened the index")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	r2, err := Open(context.Background(), r.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	pts, err := r2.Points(context.Background(), "vm")
	if err != nil || len(pts) != 1 {
		t.Fatalf("points after a killed writer: %v %v", pts, err)
	}
	if got := readAll(t, r2, pts[0], "d0"); got[5] != 1 {
		t.Fatal("point reads wrong after recovery")
	}
}
