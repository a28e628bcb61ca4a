// Package vmdkdesc writes the text descriptor of a VMDK whose data is one
// flat extent file: how cairn presents a point's disk to VMware tools and
// qemu without copying it.
//
// Vocabulary:
//
//   - descriptor: the small text file NAME.vmdk (version, CID, createType,
//     the extent lines, the disk database) that names the file holding
//     the disk's bytes.
//   - extent: that file, in raw sector order (the mount's <disk>.img, the
//     NFS export's NAME-flat.vmdk).
//   - Style: monolithicFlat (extent "FLAT name 0": qemu, Workstation, the
//     FUSE mount's disks/<disk>.vmdk) or vmfs (extent "VMFS name": what
//     ESXi writes beside a -flat.vmdk, the NFS export of instant recovery).
//   - CID: the content id, a hash of VM, point, generation and disk: the
//     same point's disk gets the same descriptor every time, another point
//     another CID.
//
// fusefs (the mount) and backupd/nfsserve (the NFS export) both write
// their descriptors here; backupd may not import fusefs.
package vmdkdesc
