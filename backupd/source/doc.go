// Package source opens the disks a backup reads: a local raw image or
// block device (File), or an NBD export (NBD), each as a Source.
//
// Vocabulary:
//
//   - Source: one disk to read. It is an io.ReaderAt of Size bytes that
//     also lists its allocated areas (what a full read must cover: SEEK_DATA
//     of a file, NBD base:allocation), says what a recovery point records
//     about it (Meta) and how it prefers to be copied (CopyOptions).
//   - ChangeTracker: a Source that can itself tell which areas changed
//     since a base (a qemu dirty bitmap exported over NBD).
//   - Spec: how a user names a source: a path, a unix socket of an NBD
//     server, or an NBD URI (Open tells them apart).
//
// The vSphere transports of backupd (nbd through a server command, hotadd,
// file) open their disks through this package too, so every way data comes
// in ends in the same Source and the same copy.
package source
