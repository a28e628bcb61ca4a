// Package vmdkstream writes and reads VMware streamOptimized VMDK files,
// the format of OVF disk uploads (HttpNfcLease, `govc import.vmdk`).
//
// Vocabulary (VMware Virtual Disk Format 5.0, "Stream-Optimized
// Compressed Sparse Extents"):
//
//   - sector: 512 bytes; every offset in the file is in sectors.
//   - grain: GrainSectors (128) sectors = 64 KiB of the disk, stored as a
//     grain marker (the grain's first disk sector and the compressed
//     length) followed by its zlib-deflated bytes, padded to a sector.
//     Grains that hold only zeros, and the disk's holes, are not stored.
//   - grain table (GT): 512 entries, the file sector of each grain of a
//     32 MiB region (0: not stored), written after that region's grains
//     behind a GT marker. The grain directory (GD) lists the GTs; the
//     footer (a copy of the header naming the GD) and the end-of-stream
//     marker close the file.
//
// Write streams a disk from an io.ReaderAt and its data extents, in one
// pass and without seeking, so it can feed an HTTP upload directly. It
// reads and deflates batches of grains (klauspost/compress, level 1) on
// several goroutines and emits them in disk order: the stream is the same
// bytes for any number of workers.
// Convert turns a stream back into a raw image (holes kept), with the
// meaning qemu-img gives it.
package vmdkstream
