package ntfs

import (
	"fmt"
	"io"
	"sync"

	"github.com/cairnbackup/cairn/partinfo"
	"www.velocidex.com/golang/go-ntfs/parser"
)

// rootIno is the MFT record of the root directory.
const rootIno = 5

// firstUserRecord is the first MFT record that is not NTFS metadata.
const firstUserRecord = 24

// cacheLimit bounds the per-volume caches of directories and streams.
const cacheLimit = 512

// FS is an open NTFS volume. It is safe for concurrent use.
type FS struct {
	mu       sync.Mutex // serialises every go-ntfs call
	ctx      *parser.NTFSContext
	vol      io.ReaderAt // the volume, offset 0 = boot sector
	volBytes int64       // bytes of the volume
	info     partinfo.Info
	dirs     map[uint64][]partinfo.DirEntry
	streams  map[uint64]stream
	sds      sdsIdx // $Secure:$SDS index, built on first use (xattr.go)
}

// stream is the opened unnamed $DATA stream of a file: resident bytes
// or a non-resident runlist reader.
type stream struct {
	res  []byte
	data *dataStream
	size int64
}

// Open parses the NTFS volume at r[off:off+size].
func Open(r io.ReaderAt, off, size int64) (f *FS, err error) {
	sr := io.NewSectionReader(r, off, size)
	ctx, err := parser.GetNTFSContext(sr, 0)
	if err != nil {
		return nil, fmt.Errorf("open NTFS volume: %v: %w", err, partinfo.ErrCorrupt)
	}
	f = &FS{ctx: ctx, vol: sr, volBytes: size, dirs: map[uint64][]partinfo.DirEntry{}, streams: map[uint64]stream{}}
	root, err := f.record(rootIno)
	if err != nil {
		return nil, fmt.Errorf("open NTFS root directory: %w", err)
	}
	if !root.isDir {
		return nil, fmt.Errorf("NTFS record 5 is not a directory: %w", partinfo.ErrCorrupt)
	}
	d := partinfo.Detect(r, off, size)
	f.info = partinfo.Info{Type: "ntfs", UUID: d.UUID, BlockSize: d.BlockSize, Size: d.Size, Used: -1, Free: -1}
	f.info.Label = f.volumeLabel()
	if d.BlockSize > 0 {
		if used, ok := f.usedClusters(d.Size / int64(d.BlockSize)); ok {
			f.info.Used = used * int64(d.BlockSize)
			f.info.Free = f.info.Size - f.info.Used
		}
	}
	return f, nil
}

// Info describes the volume.
func (f *FS) Info() partinfo.Info { return f.info }

// Root returns the MFT record number of the root directory.
func (f *FS) Root() uint64 { return rootIno }

// guard runs fn holding the parser mutex and turns a panic into an error.
func (f *FS) guard(op string, fn func() error) (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("ntfs: %s: parser panic (%v): %w", op, p, partinfo.ErrCorrupt)
		}
	}()
	return fn()
}

// volumeLabel reads $VOLUME_NAME from the $Volume record (3).
func (f *FS) volumeLabel() string {
	var label string
	_ = f.guard("read volume label", func() error {
		m, err := f.ctx.GetMFT(3)
		if err != nil {
			return err
		}
		for _, a := range m.EnumerateAttributes(f.ctx) {
			if a.Type().Value == attrVolumeName {
				b := make([]byte, min(a.DataSize(), 256))
				n, _ := a.Data(f.ctx).ReadAt(b, 0)
				label = decodeUTF16(b[:n])
			}
		}
		return nil
	})
	return label
}

// maxBitmapBytes bounds the $Bitmap read at Open (32 MiB covers 1 TiB
// of 4 KiB clusters); larger volumes report Used/Free as unknown.
const maxBitmapBytes = 32 << 20

// usedClusters counts the allocated clusters in $Bitmap (record 6).
func (f *FS) usedClusters(clusters int64) (int64, bool) {
	if clusters <= 0 || (clusters+7)/8 > maxBitmapBytes {
		return 0, false
	}
	s, err := f.openStream(6)
	if err != nil || s.data == nil || s.size < (clusters+7)/8 {
		return 0, false
	}
	b := make([]byte, (clusters+7)/8)
	if n, err := f.ReadAt(6, b, 0); n != len(b) && err != nil {
		return 0, false
	}
	used := int64(0)
	for i := int64(0); i < clusters; i++ {
		if b[i/8]&(1<<(i%8)) != 0 {
			used++
		}
	}
	return used, true
}
