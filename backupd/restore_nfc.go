package backupd

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"sync"

	"github.com/cairnbackup/cairn/backupd/vmdkstream"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// WriteTransportNFC creates the VM through an OVF-style import
// (ImportVApp) and uploads each disk through the import's HttpNfcLease as
// a streamOptimized VMDK generated from the point on the fly: holes and
// zero grains are not sent, grains are compressed. It needs nothing but
// vCenter or ESXi.
const WriteTransportNFC = "nfc"

// importVM creates and fills a new VM through the nfc transport.
func (j *restoreJob) importVM(ctx context.Context, p blockmap.Point, spec vsphere.CreateSpec) (*vsphere.CreatedVM, []RestoreDiskResult, error) {
	var results []RestoreDiskResult
	upload := func(ctx context.Context, name string, capacity int64, u *url.URL, put func(io.Reader) error) error {
		dr, err := j.openDisk(ctx, p, name, nil)
		if err != nil {
			return err
		}
		defer dr.Close()
		if dr.Size() > capacity {
			return fmt.Errorf("disk %s of the point has %d bytes, the new disk %d", name, dr.Size(), capacity)
		}
		var exts []vmdkstream.Extent
		var total int64
		for _, e := range dr.DataExtents() {
			exts = append(exts, vmdkstream.Extent{Offset: e.Offset, Length: e.Length})
			total += e.Length
		}
		add, finish := func(int64) {}, func() {}
		if j.opts.Progress != nil {
			add, finish = j.opts.Progress(spec.Name, name, total)
		}
		defer finish()
		j.log.Info("writing disk", "disk", name, "transport", WriteTransportNFC, "url_host", u.Host)
		pr, pw := io.Pipe()
		var st vmdkstream.Stats
		go func() {
			var err error
			st, err = vmdkstream.Write(pw, progressReaderAt{r: countingDisk{dr, &j.read}, add: add, mu: new(sync.Mutex)}, capacity, exts, vmdkstream.Options{})
			pw.CloseWithError(err)
		}()
		err = put(pr)
		_ = pr.CloseWithError(err) // stop the writer if the upload failed
		if err != nil {
			return err
		}
		results = append(results, RestoreDiskResult{Name: name, Transport: WriteTransportNFC, BytesWritten: st.DataBytes, StreamBytes: st.Bytes})
		return nil
	}
	created, err := j.hv.ImportVM(ctx, spec, upload)
	if err != nil {
		return nil, nil, err
	}
	for i := range results {
		for _, cd := range created.Disks {
			if cd.Name == results[i].Name {
				results[i].Target = cd.Disk.Name
			}
		}
	}
	return created, results, nil
}

// progressReaderAt counts the bytes read for progress; the stream writer
// reads from several goroutines, so add is called under mu.
type progressReaderAt struct {
	r   io.ReaderAt
	add func(int64)
	mu  *sync.Mutex
}

func (p progressReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.r.ReadAt(b, off)
	p.mu.Lock()
	p.add(int64(n))
	p.mu.Unlock()
	return n, err
}
