package vmdkstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"

	"github.com/klauspost/compress/zlib"
)

// Format constants.
const (
	SectorSize   = 512
	GrainSectors = 128
	GrainSize    = GrainSectors * SectorSize
	gtEntries    = 512
	gtCoverage   = gtEntries * GrainSize // bytes of disk per grain table
	magic        = 0x564d444b            // "KDMV"
	flagNewline  = 1 << 0
	flagCompress = 1 << 16
	flagMarkers  = 1 << 17
	gdAtEnd      = ^uint64(0)

	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3
)

// Extent is a byte range of the disk.
type Extent struct {
	Offset, Length int64
}

// header is the SparseExtentHeader (little-endian, packed, 512 bytes).
type header struct {
	Magic              uint32
	Version            uint32
	Flags              uint32
	Capacity           uint64
	GrainSize          uint64
	DescriptorOffset   uint64
	DescriptorSize     uint64
	NumGTEsPerGT       uint32
	RGDOffset          uint64
	GDOffset           uint64
	OverHead           uint64
	UncleanShutdown    uint8
	SingleEndLineChar  byte
	NonEndLineChar     byte
	DoubleEndLineChar1 byte
	DoubleEndLineChar2 byte
	CompressAlgorithm  uint16
}

func (h *header) bytes() []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, h)
	out := make([]byte, SectorSize)
	copy(out, b.Bytes())
	return out
}

// Stats says what Write stored.
type Stats struct {
	// DataBytes are the disk bytes of the grains stored (before
	// compression); Bytes is the length of the stream.
	DataBytes int64
	Grains    int64
	Bytes     int64
}

// Options of Write.
type Options struct {
	// Adapter is the descriptor's ddb.adapterType (default "lsilogic").
	Adapter string
	// HardwareVersion is ddb.virtualHWVersion (default "4").
	HardwareVersion string
	// Level is the zlib level (default zlib.BestSpeed).
	Level int
	// Workers is how many goroutines read and compress grains at once
	// (default GOMAXPROCS); the stream's order does not depend on it.
	Workers int
}

// Write streams a streamOptimized VMDK of a disk of size bytes (a
// multiple of 512) to w. Only the grains that data (sorted extents)
// touch are read from r; grains holding only zeros are left out.
func Write(w io.Writer, r io.ReaderAt, size int64, data []Extent, o Options) (Stats, error) {
	var st Stats
	if size <= 0 || size%SectorSize != 0 {
		return st, fmt.Errorf("vmdk stream: disk size %d is not a positive multiple of 512", size)
	}
	if o.Adapter == "" {
		o.Adapter = "lsilogic"
	}
	if o.HardwareVersion == "" {
		o.HardwareVersion = "4"
	}
	if o.Level == 0 {
		o.Level = zlib.BestSpeed
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &countWriter{w: bw}
	sectors := uint64(size / SectorSize)
	desc := descriptor(sectors, o)
	descSectors := uint64((len(desc) + SectorSize - 1) / SectorSize)
	overhead := (1 + descSectors + GrainSectors - 1) / GrainSectors * GrainSectors
	h := header{
		Magic: magic, Version: 3, Flags: flagNewline | flagCompress | flagMarkers, Capacity: sectors,
		GrainSize: GrainSectors, DescriptorOffset: 1, DescriptorSize: descSectors, NumGTEsPerGT: gtEntries,
		GDOffset: gdAtEnd, OverHead: overhead, SingleEndLineChar: '\n', NonEndLineChar: ' ',
		DoubleEndLineChar1: '\r', DoubleEndLineChar2: '\n', CompressAlgorithm: 1,
	}
	if _, err := cw.Write(h.bytes()); err != nil {
		return st, err
	}
	if _, err := cw.Write(pad([]byte(desc), int(descSectors)*SectorSize)); err != nil {
		return st, err
	}
	if _, err := cw.Write(make([]byte, int(overhead-1-descSectors)*SectorSize)); err != nil {
		return st, err
	}
	numGTs := (size + gtCoverage - 1) / gtCoverage
	gd := make([]uint32, numGTs)
	gt := make([]uint32, gtEntries)
	curGT := int64(-1)
	flushGT := func() error {
		if curGT < 0 {
			return nil
		}
		sec := cw.n / SectorSize
		if err := writeMarker(cw, uint64(gtEntries*4/SectorSize), markerGT); err != nil {
			return err
		}
		gd[curGT] = uint32(sec + 1)
		if err := binary.Write(cw, binary.LittleEndian, gt); err != nil {
			return err
		}
		clear(gt)
		curGT = -1
		return nil
	}
	err := compressGrains(r, size, data, o, func(g, n int64, comp []byte) error {
		if g/gtEntries != curGT {
			if err := flushGT(); err != nil {
				return err
			}
			curGT = g / gtEntries
		}
		sec := cw.n / SectorSize
		var m [12]byte
		binary.LittleEndian.PutUint64(m[0:8], uint64(g*GrainSectors))
		binary.LittleEndian.PutUint32(m[8:12], uint32(len(comp)))
		if _, err := cw.Write(m[:]); err != nil {
			return err
		}
		if _, err := cw.Write(comp); err != nil {
			return err
		}
		if err := padSector(cw); err != nil {
			return err
		}
		gt[g%gtEntries] = uint32(sec)
		st.Grains++
		st.DataBytes += n
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := flushGT(); err != nil {
		return st, err
	}
	gdSectors := (numGTs*4 + SectorSize - 1) / SectorSize
	if err := writeMarker(cw, uint64(gdSectors), markerGD); err != nil {
		return st, err
	}
	h.GDOffset = uint64(cw.n / SectorSize)
	gdb := make([]byte, gdSectors*SectorSize)
	for i, v := range gd {
		binary.LittleEndian.PutUint32(gdb[i*4:], v)
	}
	if _, err := cw.Write(gdb); err != nil {
		return st, err
	}
	if err := writeMarker(cw, 1, markerFooter); err != nil {
		return st, err
	}
	if _, err := cw.Write(h.bytes()); err != nil {
		return st, err
	}
	if err := writeMarker(cw, 0, markerEOS); err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	st.Bytes = cw.n
	return st, nil
}

func descriptor(sectors uint64, o Options) string {
	cid := rand.Uint32()
	cyl := max(1, sectors/(255*63))
	return fmt.Sprintf(`# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=%08x
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW %d SPARSE "disk.vmdk"

# The Disk Data Base
#DDB

ddb.adapterType = "%s"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.virtualHWVersion = "%s"
`, cid, sectors, o.Adapter, cyl, o.HardwareVersion)
}

func writeMarker(w io.Writer, val uint64, typ uint32) error {
	m := make([]byte, SectorSize)
	binary.LittleEndian.PutUint64(m[0:8], val)
	binary.LittleEndian.PutUint32(m[12:16], typ)
	_, err := w.Write(m)
	return err
}

func pad(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

func padSector(cw *countWriter) error {
	if r := cw.n % SectorSize; r != 0 {
		_, err := cw.Write(make([]byte, SectorSize-r))
		return err
	}
	return nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
