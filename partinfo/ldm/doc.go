// Package ldm reads Windows dynamic disks (the Logical Disk Manager
// database) from the disks of a recovery point and assembles their
// volumes, read-only.
//
// # Vocabulary
//
//   - PRIVHEAD (sector 6 of an MBR dynamic disk, the last sector of the
//     LDM metadata partition of a GPT one): the disk's GUID, where
//     its data area starts (logical disk start) and where the 1 MiB
//     database lies (config start). All LDM numbers are big-endian.
//   - Database: TOCBLOCK (sector 1 or 2 of it), VMDB (sector 17: VBLK size
//     and count) and VBLKs, records of 128 bytes (a record longer than
//     one VBLK is split into fragments of one group). Fields are packed:
//     numbers and strings carry a one-byte length.
//   - Records: disk (GUID -> object id), volume (name, size, children),
//     component (a plex: spanned or striped, with stripe size and
//     columns) and partition (a stretch of one disk: start in the data
//     area, offset in its component, size).
//   - Volume: simple and spanned (partitions concatenated by offset),
//     striped (chunks round the columns) and mirrored (two components:
//     the first whose disks are all present is read) and RAID-5 (columns
//     by partition index, left-symmetric parity as libldm maps it to
//     dm-raid's raid5_ls; one missing disk is rebuilt by XOR).
//
// Every dynamic disk carries the whole database of its disk group; the
// copy of the first disk found is used and the disks are matched by GUID.
// MBR dynamic disks (partition type 0x42, PRIVHEAD in sector 6) and GPT
// ones (PRIVHEAD in the last sector of the LDM metadata partition) are
// read.
package ldm
