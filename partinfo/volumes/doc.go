// Package volumes finds the volumes of a recovery point's disks: the
// partitions of each disk (or the whole disk when it has no partition
// table), and what lies across the disks: MD arrays, LVM volume groups,
// Windows dynamic (LDM) volumes and btrfs filesystems of several devices.
// It does not open filesystems (partinfo/fsopen does) and knows nothing
// of FUSE: the mount (fusefs/guest) and the CLI (cairn partitions, files,
// restore-file) both call it.
//
// # Vocabulary
//
//   - Volume: one browsable (or not) area of one disk: a partition p1, p2,
//     ... (MBR extended containers are left out; their logical partitions
//     are p5, p6, ...) or "whole" for a disk without a partition table.
//     It carries its offset, size and partinfo.Detection.
//   - Disk: one disk of a point by name, as an io.ReaderAt and a size.
//   - Stack: what Scan assembles across the disks: the MD set and its
//     readable arrays, the LVM set (PVs on partitions, whole disks or
//     arrays), the LDM set and the btrfs filesystems of several devices
//     (devices on partitions, whole disks, arrays or LVs).
//   - Volume path: the name of a volume that spans disks, the same under
//     fs/ of the mount and in `--volume`: md/<array>, lvm/<vg>/<lv>,
//     ldm/<volume>, btrfs/<label or UUID> (MDDir, LVMDir, LDMDir,
//     BtrfsDir, LVPath, BtrfsName).
//
// Panics: every call into a reader goes through the reader's own entry
// point (partinfo.ReadTable, partinfo.Detect, lvm.Scan, md.Scan, ldm.Scan),
// which turns a parser panic into an error or a problem; this package
// adds no recover of its own.
package volumes
