package blockmap

import (
	"context"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// TestIndexWhileForking commits points while another goroutine of the same
// process keeps starting child processes. A child holds copies of the
// parent's descriptors, among them the flock'd Badger directory lock, from
// fork until exec; an index open in that window meets the lock taken and
// must wait for the exec instead of failing (backupd once kept process
// starts apart from index operations for this).
func TestIndexWhileForking(t *testing.T) {
	requireTools(t, "true")
	true_, _ := exec.LookPath("true")
	r := newTestRepo(t)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = exec.Command(true_).Run()
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	d := &modelDisk{name: "d0", data: make([]byte, 4*testBS), changed: map[int64]bool{}}
	for i := range 10 {
		d.data[i] = byte(i + 1)
		d.changed[0] = true
		s, err := r.BeginPoint(ctx, "vm", PointOptions{Time: time.Unix(int64(1000+i), 0)})
		if err != nil {
			t.Fatalf("begin point %d while forking: %v", i, err)
		}
		w, err := s.AddDisk(ctx, "d0", int64(len(d.data)), DiskOptions{})
		if err != nil {
			t.Fatalf("add disk %d while forking: %v", i, err)
		}
		if err := w.WriteBlock(0, d.data[:testBS]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx); err != nil {
			t.Fatalf("commit %d while forking: %v", i, err)
		}
		if _, err := r.ResolvePoint(ctx, "vm", "latest"); err != nil {
			t.Fatalf("resolve %d while forking: %v", i, err)
		}
	}
}
