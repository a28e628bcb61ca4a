package backupd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/copier"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// VerifySourceOptions configure VerifyAgainstSource.
type VerifySourceOptions struct {
	JobOptions
	// Repair stores a corrected point (every block read from the snapshot)
	// when CBT missed a change.
	Repair bool
}

// DiskVerify is the comparison of one disk with its source.
type DiskVerify struct {
	Name string `json:"name"`
	// Compared is the number of bytes read from the source and compared.
	Compared int64 `json:"compared_bytes"`
	// CBTChanged is the bytes CBT reports as changed since the point (those
	// may differ legitimately).
	CBTChanged int64 `json:"cbt_changed_bytes"`
	// Missed are the areas that differ from the point although CBT says
	// they did not change: changes CBT missed.
	Missed []blockmap.Extent `json:"missed,omitempty"`
	// Note explains a disk that could not be compared block by block.
	Note string `json:"note,omitempty"`
}

// MissedBytes sums the missed areas.
func (d DiskVerify) MissedBytes() int64 { return copier.Total(d.Missed) }

// SourceReport is the outcome of VerifyAgainstSource.
type SourceReport struct {
	JobID string       `json:"job_id"`
	VM    string       `json:"vm"`
	Point string       `json:"point"` // the point compared with
	Disks []DiskVerify `json:"disks"`
	// Repaired is the id of the corrected point, if one was stored.
	Repaired string `json:"repaired,omitempty"`
}

// OK reports whether CBT missed nothing.
func (r *SourceReport) OK() bool {
	for _, d := range r.Disks {
		if len(d.Missed) > 0 {
			return false
		}
	}
	return true
}

// VerifyAgainstSource snapshots the VM, reads every disk whole and compares
// each block with the VM's latest point. Blocks that differ where CBT
// reports no change since that point are changes CBT missed (VMware
// documents that this can happen). With Repair, a corrected point holding
// the snapshot's full contents is committed when anything was missed.
func VerifyAgainstSource(ctx context.Context, repo *blockmap.Repo, conn *vsphere.Conn, vmSpec string, opts VerifySourceOptions) (*SourceReport, error) {
	return VerifySource(ctx, repo, NewVSphere(conn), vmSpec, opts)
}

// VerifySource is VerifyAgainstSource for a VM of any hypervisor.
func VerifySource(ctx context.Context, repo *blockmap.Repo, hv Hypervisor, vmSpec string, opts VerifySourceOptions) (*SourceReport, error) {
	j := newVMJob(repo, hv, vmSpec, opts.JobOptions)
	rec := JobRecord{ID: j.id, Kind: JobVerify, VM: vmSpec, VCenter: hv.Endpoint(), Start: time.Now().UTC(), State: JobRunning}
	jobs := NewJobLog(repo.Dir())
	_ = jobs.Append(rec)
	rep := &SourceReport{JobID: j.id}
	err := j.withSnapshot(ctx, func(ctx context.Context) error { return j.verify(ctx, rep, opts.Repair) })
	rec.End, rec.VM, rec.State = time.Now().UTC(), rep.VM, JobOK
	for _, d := range rep.Disks {
		rec.BytesRead += d.Compared
	}
	switch {
	case err != nil:
		rec.State, rec.Error = EndState(Cancelled(ctx, err)), err.Error()
	case !rep.OK():
		rec.State, rec.Error = JobFailed, "the source differs from the latest point where CBT reported no change"
		rec.Point = rep.Repaired
	}
	if aerr := jobs.Append(rec); aerr != nil {
		j.log.Warn("cannot record the job", "error", aerr)
	}
	return rep, err
}

func (j *vmJob) verify(ctx context.Context, rep *SourceReport, repair bool) (err error) {
	rep.VM = j.vm.Name
	latest, err := j.repo.ResolvePoint(ctx, j.vm.Name, "latest")
	if err != nil {
		return fmt.Errorf("verify %s against its source: %w", j.vm.Name, err)
	}
	rep.Point = latest.ID
	var sess *blockmap.Session
	if repair {
		if sess, err = j.beginPoint(ctx, "cairn verify --against-source --repair"); err != nil {
			return err
		}
		defer func() {
			if err != nil || rep.Repaired == "" {
				_ = sess.Abort(context.WithoutCancel(ctx))
			}
		}()
	}
	for _, d := range j.disks {
		dv, err := j.verifyDisk(ctx, latest, d, sess)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.Name, err)
		}
		rep.Disks = append(rep.Disks, dv)
	}
	if sess != nil && !rep.OK() {
		p, err := sess.Commit(ctx)
		if err != nil {
			return err
		}
		rep.Repaired = p.ID
		j.log.Warn("stored a corrected point", "vm", j.vm.Name, "point", p.ID)
	}
	return nil
}

// verifyDisk compares one frozen disk with the point, block by block.
func (j *vmJob) verifyDisk(ctx context.Context, latest blockmap.Point, d vsphere.Disk, sess *blockmap.Session) (DiskVerify, error) {
	dv := DiskVerify{Name: d.Name}
	info, ok := latest.Disk(d.Name)
	var dr *blockmap.DiskReader
	if ok && info.Size == d.Capacity {
		var err error
		if dr, err = j.repo.OpenDisk(ctx, latest, d.Name); err != nil {
			return dv, err
		}
		defer dr.Close()
	} else if !ok {
		dv.Note = "not in the latest point (added since)"
	} else {
		dv.Note = fmt.Sprintf("size changed from %d to %d bytes since the latest point", info.Size, d.Capacity)
	}
	changed := map[int64]bool{}
	bs := int64(j.repo.BlockSize())
	if meta, ok := ReadDiskMeta(info); ok && dr != nil && meta.ChangeID != "" {
		areas, err := j.hv.ChangedAreas(ctx, j.vm, j.snap, d, meta.ChangeID)
		var rej *vsphere.ChangeIDRejectedError
		switch {
		case errors.As(err, &rej):
			dv.Note = "CBT cannot tell what changed since the point (" + rej.Err.Error() + "); every difference is reported"
		case err != nil:
			return dv, err
		}
		for _, e := range copier.Align(toExtents(areas), int(bs), d.Capacity) {
			dv.CBTChanged += e.Length
			for b := e.Offset / bs; b*bs < e.Offset+e.Length; b++ {
				changed[b] = true
			}
		}
	}
	var w *blockmap.DiskWriter
	if sess != nil {
		meta := diskMeta(d)
		meta.Full, meta.FullReason = true, "verify --against-source --repair: every block read from the source"
		var err error
		if w, err = sess.AddDisk(ctx, d.Name, d.Capacity, blockmap.DiskOptions{Full: true, FullReason: meta.FullReason, Meta: mustJSON(meta), Content: anomaly.NewMeter()}); err != nil {
			return dv, err
		}
	}
	src, transport, err := j.openSource(ctx, d)
	if err != nil {
		return dv, err
	}
	defer src.Close()
	const chunk = 1 << 20
	a, b := make([]byte, chunk), make([]byte, chunk)
	for off := int64(0); off < d.Capacity; off += chunk {
		if err := ctx.Err(); err != nil {
			return dv, err
		}
		n := min(chunk, d.Capacity-off)
		if _, err := src.ReadAt(a[:n], off); err != nil && !(errors.Is(err, io.EOF)) {
			return dv, fmt.Errorf("read source at %d via %s: %w", off, transport, err)
		}
		dv.Compared += n
		if dr != nil {
			if _, err := dr.ReadAt(b[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return dv, fmt.Errorf("read point %s at %d: %w", latest.ID, off, err)
			}
		}
		for p := int64(0); p < n; p += bs {
			l := min(bs, n-p)
			blk := (off + p) / bs
			if dr != nil && !changed[blk] && !bytes.Equal(a[p:p+l], b[p:p+l]) {
				dv.Missed = appendExtent(dv.Missed, blockmap.Extent{Offset: off + p, Length: l})
			}
			if w != nil {
				if err := w.WriteBlock(blk, a[p:p+l]); err != nil {
					return dv, err
				}
			}
		}
		if w != nil {
			w.AddBytesRead(n)
		}
	}
	if len(dv.Missed) > 0 {
		j.log.Error("CBT missed changes", "vm", j.vm.Name, "disk", d.Name, "bytes", dv.MissedBytes(), "areas", len(dv.Missed))
	}
	return dv, nil
}

// appendExtent appends e, merging it with the last extent when adjacent.
func appendExtent(list []blockmap.Extent, e blockmap.Extent) []blockmap.Extent {
	if n := len(list); n > 0 && list[n-1].Offset+list[n-1].Length == e.Offset {
		list[n-1].Length += e.Length
		return list
	}
	return append(list, e)
}
