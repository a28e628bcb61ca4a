// Package lvm reads LVM2 volume groups from the disks of a recovery point,
// read-only and without device-mapper, so that the filesystems on logical
// volumes can be opened like those on partitions.
//
// # Vocabulary
//
//   - Device: a whole disk or a partition that may hold a physical volume.
//   - PV (physical volume): a device with an LVM label ("LABELONE" in one
//     of its first four sectors) and a PV header naming its UUID, its data
//     area (where extent 0 starts: pe_start) and its metadata areas.
//   - Metadata area: a 512-byte header (magic, checksum) followed by a
//     circular buffer holding text copies of the VG metadata; the header's
//     first raw location points at the committed copy, which may wrap
//     round the end of the buffer. Checksums are LVM's CRC-32 (IEEE,
//     initial value 0xf597a6cf, no final inversion).
//   - VG (volume group): the text metadata, in LVM's config format
//     (ParseConfig), lists PVs by UUID and LVs by segments. Every PV with
//     a metadata area carries a copy; the one with the highest seqno wins
//     and PVs holding older or damaged copies are reported in Problems.
//   - Extent: the VG's allocation unit (extent_size sectors).
//   - LV (logical volume): segments of logical extents. Segment types
//     read: striped (linear is one stripe), raid0, raid1 and mirror (the
//     first leg whose PVs are all present), raid4 (md raid5 with parity
//     first, as dm-raid runs it), raid5 (all dm-raid layouts), raid6
//     (zr, nr, nc: md's DDF layouts) and raid10 through partinfo/md's
//     layouts (an image on a missing PV is a missing member), zero; thin
//     volumes through their pool's metadata btrees. Others (cache;
//     old-style COW snapshots; error) give ErrUnsupported with the
//     reason.
//   - Volume: an io.ReaderAt over an LV's bytes, mapped to the devices.
//
// A VG missing a PV is still assembled: LVs wholly on present PVs read
// normally, the others fail with ErrMissingPV naming the PV and the device
// it was last seen on.
package lvm
