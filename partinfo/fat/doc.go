// Package fat is cairn's read-only FAT12/FAT16/FAT32 reader, implementing
// partinfo.Filesystem over an io.ReaderAt.
//
// cairn uses its own reader rather than go-diskfs: go-diskfs fails to open
// empty files ("invalid start cluster: 0") and assumes a writable device,
// while the FAT format is small enough to read correctly in a few hundred
// lines: BPB, the FAT, cluster chains (with loop and range checks) and
// directory entries with VFAT long names (UTF-16).
//
// Inode numbers are the byte offset of a file's short directory entry in
// the volume, so Stat needs no table; the root directory is inode 1.
// FAT stores local time without a zone: cairn reports it as UTC.
package fat
