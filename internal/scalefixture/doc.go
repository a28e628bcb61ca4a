// Package scalefixture builds a repository of the size of a real site:
// hundreds of VMs, each with tens of recovery points (daily backups), and
// the job log of every run, written through the real writer API
// (blockmap.Session) and job log (backupd.JobLog).
//
// Vocabulary: a Spec says how many VMs and points per VM; each VM has one
// small disk whose first point is a full backup and whose later points
// change a few blocks each (real deltas); Spec.Ext4VMs VMs carry a real
// ext4 filesystem (mkfs.ext4 -d) instead of random bytes. Build caches the
// result under a directory keyed by Version and the spec, so later runs
// reuse it.
package scalefixture
