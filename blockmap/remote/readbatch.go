package remote

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// readBatch is up to batchBlocks blocks of a disk read from the local
// repository, in block order, into buf.
type readBatch struct {
	blocks []*block
	bytes  int64
	buf    []byte
	err    error
}

const (
	// readAhead is the number of batches read ahead of the one being
	// hashed and sealed.
	readAhead = 2
	// readersPerBatch is the number of runs of a batch read at once: the
	// changed blocks of an incremental are scattered, and one pread at a
	// time leaves the disk (and, cold, the page cache) idle between them.
	readersPerBatch = 8
)

// readBatches reads the blocks of runs (sorted, of one disk) in batches
// of at most batchBlocks and hands each batch to process in order. Batches
// are read ahead of process (readAhead of them), and the runs of a batch
// are read at once (readersPerBatch), so that reading overlaps hashing,
// sealing and uploading even when every run is one scattered block.
// waited accumulates the time spent waiting for a batch.
func (r *Remote) readBatches(ctx context.Context, dr *blockmap.DiskReader, disk blockmap.DiskInfo, bs int64, runs []genRun, process func(*readBatch) error, waited *time.Duration) error {
	if len(runs) == 0 {
		return nil
	}
	ch := make(chan *readBatch, readAhead-1)
	free := make(chan []byte, readAhead+1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		var segs []genRun
		var count int64
		send := func() bool {
			if len(segs) == 0 {
				return true
			}
			var buf []byte
			select {
			case buf = <-free:
			default:
				buf = batchBuffer(int(batchBlocks * bs))
			}
			bt := r.readSegments(ctx, dr, disk, bs, segs, buf)
			segs, count = segs[:0], 0
			select {
			case ch <- bt:
				return bt.err == nil
			case <-stop:
				return false
			}
		}
		for _, ru := range runs {
			for b := ru.first; b < ru.end(); {
				n := min(ru.end()-b, batchBlocks-count)
				segs = append(segs, genRun{first: b, n: n})
				count += n
				b += n
				if count == batchBlocks && !send() {
					return
				}
			}
		}
		send()
	}()
	var err error
	for {
		t := time.Now()
		bt, ok := <-ch
		*waited += time.Since(t)
		if !ok {
			break
		}
		if err == nil {
			err = bt.err
		}
		if err == nil {
			err = process(bt)
		}
		if err != nil {
			break
		}
		select {
		case free <- bt.buf:
		default:
			putBatchBuffer(bt.buf)
		}
	}
	close(stop)
	for bt := range ch { // let the reader end
		putBatchBuffer(bt.buf)
	}
	wg.Wait()
	for {
		select {
		case b := <-free:
			putBatchBuffer(b)
		default:
			return err
		}
	}
}

// batchPool keeps read batch buffers for the next disk or point of a run
// (a VM of 50 points read 50 times three fresh buffers).
var batchPool sync.Pool

func batchBuffer(n int) []byte {
	if bp, ok := batchPool.Get().(*[]byte); ok && cap(*bp) >= n {
		return (*bp)[:n]
	}
	return make([]byte, n)
}

func putBatchBuffer(b []byte) {
	if b != nil {
		batchPool.Put(&b)
	}
}

// readSegments reads the blocks of segs (at most batchBlocks in all)
// into buf, readersPerBatch segments at once.
func (r *Remote) readSegments(ctx context.Context, dr *blockmap.DiskReader, disk blockmap.DiskInfo, bs int64, segs []genRun, buf []byte) *readBatch {
	bt := &readBatch{buf: buf}
	type part struct {
		off int64
		dst []byte
	}
	parts := make([]part, len(segs))
	pos := int64(0)
	for i, sg := range segs {
		off := sg.first * bs
		n := min(sg.n*bs, disk.Size-off)
		parts[i] = part{off: off, dst: buf[pos : pos+n]}
		for j := int64(0); j < n; j += bs {
			bt.blocks = append(bt.blocks, &block{n: (off + j) / bs, data: buf[pos+j : pos+min(n, j+bs)]})
		}
		bt.bytes += n
		pos += n
	}
	if err := ctx.Err(); err != nil {
		bt.err = err
		return bt
	}
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, readersPerBatch)
		errs = make([]error, len(parts))
	)
	for i, pt := range parts {
		if r.beforeRead != nil {
			r.beforeRead(segs[i].first)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := dr.ReadAt(pt.dst, pt.off); err != nil {
				errs[i] = fmt.Errorf("read local disk %s: %w", disk.Name, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			bt.err = err
			break
		}
	}
	return bt
}

// preopened holds the local disks of the point a replication will most
// likely copy first, opened (their block maps read from the repository
// index) while the remote is listed: the first point this machine has no
// record of copying. Disks not taken are closed by close.
type preopened struct {
	p    blockmap.Point
	done chan struct{}
	mu   sync.Mutex
	drs  map[string]*blockmap.DiskReader
}

func (r *Remote) preopen(ctx context.Context, repo *blockmap.Repo, cacheDir string, pts []blockmap.Point) *preopened {
	for _, p := range pts { // oldest first
		if _, err := os.Stat(filepath.Join(r.stateDir(cacheDir, p.VM), strconv.FormatUint(uint64(p.Gen), 10))); err == nil {
			continue // copied before (the remote may still lack it: then it opens as usual)
		}
		po := &preopened{p: p, done: make(chan struct{}), drs: map[string]*blockmap.DiskReader{}}
		go func() {
			defer close(po.done)
			for _, d := range p.Disks {
				dr, err := repo.OpenDisk(ctx, p, d.Name)
				if err != nil {
					return // opened again (and the error reported) when needed
				}
				po.mu.Lock()
				po.drs[d.Name] = dr
				po.mu.Unlock()
			}
		}()
		return po
	}
	return nil
}

// open returns disk of p: the one opened ahead when there is one.
func (po *preopened) open(ctx context.Context, repo *blockmap.Repo, p blockmap.Point, disk string) (*blockmap.DiskReader, error) {
	if po != nil && po.p.VM == p.VM && po.p.ID == p.ID && po.p.Gen == p.Gen {
		<-po.done
		po.mu.Lock()
		dr := po.drs[disk]
		delete(po.drs, disk)
		po.mu.Unlock()
		if dr != nil {
			return dr, nil
		}
	}
	return repo.OpenDisk(ctx, p, disk)
}

// close closes the disks opened ahead and not taken.
func (po *preopened) close() {
	if po == nil {
		return
	}
	<-po.done
	po.mu.Lock()
	defer po.mu.Unlock()
	for n, dr := range po.drs {
		dr.Close()
		delete(po.drs, n)
	}
}
