package vmdkstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zlib"
)

// ErrFormat marks input that is not a streamOptimized VMDK this package
// reads (the message says what is wrong).
var ErrFormat = errors.New("not a streamOptimized VMDK")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// WriterAtTruncater is where Convert writes the raw disk: a file.
type WriterAtTruncater interface {
	io.WriterAt
	Truncate(size int64) error
}

// Convert reads a streamOptimized VMDK from r (in one pass) and writes
// the disk it holds to out as a raw image of its capacity: each stored
// grain at its place, everything else left as a hole (reads as zeros), as
// `qemu-img convert -f vmdk -O raw` gives it. It returns the capacity and
// the bytes written. Grains outside the capacity, bad markers, and a
// stream that ends before its end-of-stream marker are errors.
func Convert(r io.Reader, out WriterAtTruncater) (capacity, written int64, err error) {
	br := bufio.NewReaderSize(r, 1<<20)
	sec := make([]byte, SectorSize)
	if _, err := io.ReadFull(br, sec); err != nil {
		return 0, 0, formatErr("header: %v", err)
	}
	var h header
	if err := binary.Read(bytes.NewReader(sec), binary.LittleEndian, &h); err != nil {
		return 0, 0, formatErr("header: %v", err)
	}
	switch {
	case h.Magic != magic:
		return 0, 0, formatErr("magic %#x", h.Magic)
	case h.Flags&flagCompress == 0 || h.Flags&flagMarkers == 0:
		return 0, 0, formatErr("flags %#x: grains not compressed or no markers (a monolithicSparse VMDK?)", h.Flags)
	case h.CompressAlgorithm != 1:
		return 0, 0, formatErr("compression algorithm %d (only deflate, 1)", h.CompressAlgorithm)
	case h.GrainSize == 0 || h.GrainSize > 1<<16 || h.GrainSize&(h.GrainSize-1) != 0:
		return 0, 0, formatErr("grain size %d sectors", h.GrainSize)
	case h.OverHead < 1 || h.Capacity == 0 || h.Capacity > 1<<40:
		return 0, 0, formatErr("overhead %d, capacity %d sectors", h.OverHead, h.Capacity)
	}
	capacity = int64(h.Capacity) * SectorSize
	grain := int64(h.GrainSize) * SectorSize
	if err := out.Truncate(capacity); err != nil {
		return 0, 0, err
	}
	if _, err := io.CopyN(io.Discard, br, int64(h.OverHead-1)*SectorSize); err != nil {
		return 0, 0, formatErr("descriptor: %v", err)
	}
	raw := make([]byte, grain)
	compBuf := make([]byte, 2*grain)
	var zr io.ReadCloser
	for {
		if _, err := io.ReadFull(br, sec[:12]); err != nil {
			return capacity, written, formatErr("stream ends without an end-of-stream marker: %v", err)
		}
		val := binary.LittleEndian.Uint64(sec[0:8])
		size := binary.LittleEndian.Uint32(sec[8:12])
		if size > 0 { // a grain
			lba := int64(val)
			off := lba * SectorSize
			if lba%int64(h.GrainSize) != 0 || off >= capacity {
				return capacity, written, formatErr("grain at sector %d (capacity %d sectors)", lba, h.Capacity)
			}
			if size > uint32(2*grain) {
				return capacity, written, formatErr("grain at sector %d: %d compressed bytes", lba, size)
			}
			comp := compBuf[:size]
			if _, err := io.ReadFull(br, comp); err != nil {
				return capacity, written, formatErr("grain at sector %d: %v", lba, err)
			}
			if zr == nil {
				zr, err = zlib.NewReader(bytes.NewReader(comp))
			} else {
				err = zr.(zlib.Resetter).Reset(bytes.NewReader(comp), nil)
			}
			if err != nil {
				return capacity, written, formatErr("grain at sector %d: %v", lba, err)
			}
			n, err := io.ReadFull(zr, raw)
			if err != nil && err != io.ErrUnexpectedEOF {
				return capacity, written, formatErr("grain at sector %d: inflate: %v", lba, err)
			}
			n = int(min(int64(n), capacity-off))
			if _, err := out.WriteAt(raw[:n], off); err != nil {
				return capacity, written, err
			}
			written += int64(n)
			if rest := (12 + int64(size)) % SectorSize; rest != 0 {
				if _, err := io.CopyN(io.Discard, br, SectorSize-rest); err != nil {
					return capacity, written, formatErr("grain at sector %d: padding: %v", lba, err)
				}
			}
			continue
		}
		// a metadata marker: the rest of its sector, then val sectors
		if _, err := io.ReadFull(br, sec[12:]); err != nil {
			return capacity, written, formatErr("marker: %v", err)
		}
		typ := binary.LittleEndian.Uint32(sec[12:16])
		switch typ {
		case markerEOS:
			return capacity, written, nil
		case markerGT, markerGD, markerFooter:
			if val > 1<<24 {
				return capacity, written, formatErr("marker type %d of %d sectors", typ, val)
			}
			if _, err := io.CopyN(io.Discard, br, int64(val)*SectorSize); err != nil {
				return capacity, written, formatErr("marker type %d: %v", typ, err)
			}
		default:
			return capacity, written, formatErr("unknown marker type %d", typ)
		}
	}
}
