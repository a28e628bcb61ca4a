package ntfs

import (
	"github.com/cairnbackup/cairn/partinfo"
	"www.velocidex.com/golang/go-ntfs/parser"
)

// Index walk limits. go-ntfs's MFT_ENTRY.Dir steps through the whole
// declared size of $INDEX_ALLOCATION, so a corrupt size of terabytes
// (read from sparse runs as zeros) takes hours; cairn walks only mapped
// ranges and stops at maxIndexBytes.
const (
	indexBlockSize = 0x1000
	maxIndexBytes  = 1 << 30
)

// indexEntries returns the $I30 index entries of a directory record,
// from its $INDEX_ROOT and the mapped parts of its $INDEX_ALLOCATION.
// The caller holds f.mu.
func (f *FS) indexEntries(m *parser.MFT_ENTRY) []*parser.INDEX_RECORD_ENTRY {
	var out []*parser.INDEX_RECORD_ENTRY
	budget := int64(maxIndexBytes)
	for _, a := range m.EnumerateAttributes(f.ctx) {
		if a.Name() != "$I30" {
			continue
		}
		switch a.Type().Value {
		case parser.ATTR_TYPE_INDEX_ROOT:
			root := f.ctx.Profile.INDEX_ROOT(a.Data(f.ctx), 0)
			out = append(out, root.Node().GetRecords(f.ctx)...)
		case parser.ATTR_TYPE_INDEX_ALLOCATION:
			data := a.Data(f.ctx)
			size := a.DataSize()
			ranges := []parser.Range{{Offset: 0, Length: size}}
			if rr, ok := data.(parser.RangeReaderAt); ok {
				ranges = rr.Ranges()
			}
			for _, r := range ranges {
				if r.IsSparse {
					continue
				}
				start := (r.Offset + indexBlockSize - 1) / indexBlockSize * indexBlockSize
				for off := start; off < r.Offset+r.Length && off < size && budget > 0; off += indexBlockSize {
					budget -= indexBlockSize
					hdr, err := parser.DecodeSTANDARD_INDEX_HEADER(f.ctx, data, off, indexBlockSize)
					if err != nil {
						continue
					}
					out = append(out, hdr.Node().GetRecords(f.ctx)...)
				}
			}
		}
	}
	return out
}

var _ partinfo.Filesystem = (*FS)(nil)
