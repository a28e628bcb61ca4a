// Package backupd runs backup jobs: one job protects one VM as one new
// recovery point. It snapshots the VM (quiesced, falling back to
// crash-consistent), decides per disk between a full read (first backup,
// CBT reset, disk resized, changeId rejected) and an incremental read of
// the areas Changed Block Tracking reports, reads those areas through a
// transport (nbd, hotadd or file, tried in the order given), feeds them to
// the repository writer, and commits. The snapshot is removed, NBD servers
// are stopped and hot-added disks are detached on every path; what a
// killed run left behind is cleaned up by the next one. Every job leaves a
// record in <repo>/jobs/.
package backupd
