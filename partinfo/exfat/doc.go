// Package exfat is cairn's read-only exFAT reader, implementing
// partinfo.Filesystem over an io.ReaderAt.
//
// # Vocabulary
//
//   - Boot region: the main boot sector (geometry, root directory cluster,
//     serial number), checked against the boot checksum sector (sector 11).
//   - FAT: 32-bit cluster chain links; the active FAT (VolumeFlags bit 0)
//     is used. Files flagged NoFatChain are contiguous and skip the FAT.
//   - Entry set: a File entry (0x85: attributes, times), a Stream
//     Extension (0xC0: first cluster, valid data length, data length,
//     name length) and File Name entries (0xC1: UTF-16, 15 units each),
//     protected by a 16-bit set checksum that is verified.
//   - Inode: the byte offset of a file's 0x85 entry in the volume; the
//     root directory is inode 1. Directories are parsed whole and cached.
//   - Times: 2-second timestamps plus a 10 ms increment and a UTC offset
//     in 15-minute units; without a valid offset the time is reported as
//     UTC (like FAT).
//
// Bytes between a file's valid data length and its size read as zeros.
// exFAT has no owners, permissions or links: directories are 0555, files
// 0444 (0555 is not implied by any attribute).
package exfat
