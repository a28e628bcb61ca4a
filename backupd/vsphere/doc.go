// Package vsphere is cairn's side of the vSphere API: it logs in to a
// vCenter or ESXi host (TLS verified, or pinned to a SHA-256 thumbprint),
// keeps the session alive, finds virtual machines by name, inventory path
// or managed object reference, names their disks by controller and unit
// (scsi0-0, sata0-1, nvme0-0), switches Changed Block Tracking on, takes
// and removes the backup snapshots (quiesced, with a crash-consistent
// fallback), asks QueryChangedDiskAreas what changed, maps datastore paths
// to local files, and hot-adds snapshot disks to a proxy VM.
//
// Disk.SkipKind tells the disks a snapshot does not hold (independent
// disks, physical-mode RDMs). CheckSnapshotable refuses, and a failed
// snapshot is explained as, a NotSnapshotableError (orphaned or
// inaccessible VMs, Fault Tolerance, encryption without privileges,
// inaccessible datastores, a migration in progress). IsCairnSnapshot
// tells cairn's snapshots from the VM users' own.
//
// It knows nothing about the repository: package backupd drives a backup
// job with it.
package vsphere
