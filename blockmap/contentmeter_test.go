package blockmap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// countMeter counts the blocks it is shown and their first bytes.
type countMeter struct {
	mu     sync.Mutex
	blocks int
	firsts []byte
}

func (m *countMeter) Observe(b []byte) {
	m.mu.Lock()
	m.blocks++
	m.firsts = append(m.firsts, b[0])
	m.mu.Unlock()
}

func (m *countMeter) Figures() json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"blocks":%d}`, m.blocks))
}

// TestContentMeterJudgeAndGuard: a disk's ContentMeter is shown the data
// blocks the point stores and no others (not unchanged ones, not zero
// ones) and its figures are kept in the disk; Judge sees the point and
// the VM's earlier points and its answer is kept as Point.Verdict;
// PruneWith keeps what the guard names, with its reason.
func TestContentMeterJudgeAndGuard(t *testing.T) {
	ctx := context.Background()
	r := newTestRepo(t)
	bs := r.cfg.BlockSize
	block := func(c byte) []byte { return bytes.Repeat([]byte{c}, bs) }
	write := func(gen int, blocks map[int64][]byte) (Point, *countMeter, int) {
		t.Helper()
		var earlier int
		sess, err := r.BeginPoint(ctx, "vm", PointOptions{Time: time.Unix(int64(1000+gen), 0),
			Judge: func(p Point, e []Point) json.RawMessage {
				earlier = len(e)
				return json.RawMessage(fmt.Sprintf(`{"status":"normal","disks":%d}`, len(p.Disks)))
			}})
		if err != nil {
			t.Fatal(err)
		}
		m := &countMeter{}
		w, err := sess.AddDisk(ctx, "d0", int64(8*bs), DiskOptions{Full: true, Content: m})
		if err != nil {
			t.Fatal(err)
		}
		for idx, b := range blocks {
			if err := w.WriteBlock(idx, b); err != nil {
				t.Fatal(err)
			}
		}
		p, err := sess.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p, m, earlier
	}
	p1, m1, e1 := write(1, map[int64][]byte{0: block('a'), 1: block('b'), 2: block(0)})
	if m1.blocks != 2 || e1 != 0 || string(p1.Disks[0].Content) != `{"blocks":2}` || string(p1.Verdict) != `{"status":"normal","disks":1}` {
		t.Fatalf("first point: meter saw %d blocks, judge %d earlier points; content %s verdict %s", m1.blocks, e1, p1.Disks[0].Content, p1.Verdict)
	}
	// The same two blocks, one changed, a zero: only the changed one is shown.
	p2, m2, e2 := write(2, map[int64][]byte{0: block('a'), 1: block('c'), 3: block(0)})
	if m2.blocks != 1 || m2.firsts[0] != 'c' || e2 != 1 {
		t.Fatalf("second point: meter saw %d blocks %q, judge %d earlier points", m2.blocks, m2.firsts, e2)
	}
	p3, _, _ := write(3, map[int64][]byte{1: block('d')})
	got, err := r.Points(ctx, "vm")
	if err != nil || len(got) != 3 || string(got[1].Verdict) != string(p2.Verdict) || string(got[1].Disks[0].Content) != `{"blocks":1}` {
		t.Fatalf("points read back: %v %+v", err, got)
	}
	res, err := r.PruneWith(ctx, "vm", Policy{KeepLast: 1}, false, func(vm string, pts []Point) map[uint32]string {
		return map[uint32]string{p1.Gen: "kept for a reason"}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 1 || res.Deleted[0].Gen != p2.Gen || len(res.Protected) != 1 ||
		res.Protected[0] != (ProtectedPoint{VM: "vm", Point: p1.ID, Reason: "kept for a reason"}) {
		t.Fatalf("prune: deleted %v, protected %+v", res.Deleted, res.Protected)
	}
	if got, _ := r.Points(ctx, "vm"); len(got) != 2 || got[0].Gen != p1.Gen || got[1].Gen != p3.Gen {
		t.Fatalf("after prune: %+v", got)
	}
}
