// Package backupd is cairn's backup engine. Every way data comes in runs
// through one pipeline:
//
//	Hypervisor (vSphere; in memory for tests)     cairn import: paths, NBD URIs
//	  FindVM, EnableCBT, snapshot, ChangedAreas        |
//	        |                                          |
//	        v                                          v
//	     Plan per disk  <---------------------  Plan per disk
//	     (full or incremental, which areas, why)
//	        |
//	        v  Transport (hotadd, nbd, file) opens a DiskRef
//	     Source (backupd/source: file or block device, NBD export)
//	        |
//	        v  Copy: areas (or the source's allocated areas), aligned,
//	        |        read by copier.Copy; blockmap hashes, skips zero
//	        |        and unchanged blocks
//	     blockmap DiskWriter
//	        |
//	        v  Commit: the recovery point appears atomically
//	     recovery point (PointMeta, DiskMeta per disk)
//
// Restores run the other way over the same pieces:
//
//	recovery point (or a PointSource: an offsite remote) + its vmconfig
//	        |
//	        v  RestoreHypervisor: LookupVM; CreateVM (or ImportVM: nfc)
//	        |  for a new VM, PowerOff for --replace
//	plan per disk: a new disk's data areas, every area (--replace,
//	        |  --full), or the areas CBT reports changed since the
//	        |  point's changeId (quick rollback: ChangedAreasOfBase)
//	        v  WriteTransport (nbd, hotadd) opens a DiskRef as a DiskTarget
//	     copyExtents: data pieces and zero ranges, several in flight
//	        |
//	        v  FinishRestore (marker cleared), PowerOn; on a failure
//	           DestroyVM, or RenameVM to NAME-failed-restore
//
// Vocabulary:
//
//   - Job: one run for one VM (Backup, VerifySource), recorded in
//     <repo>/jobs/ (JobLog). It finds and locks the VM, removes what a
//     killed run left (snapshots, hot-added disks), makes sure CBT is on,
//     takes the snapshot (quiesced per the quiesce mode, falling back to
//     crash-consistent: vsphere.SnapshotWithMode) and removes it on every
//     path.
//   - SkippedDisk: a disk of the VM a point holds no data of, left out
//     because snapshots do not hold it (independent disks, physical-mode
//     RDMs: vsphere.Disk.SkipKind) or because a DiskExclusion
//     (--exclude-disk, exclude_disks:) names it; recorded in PointMeta
//     with the job's Warnings and marked not_backed_up in the point's
//     vmconfig, so that Restore creates it empty (restore_empty.go).
//   - Hypervisor: the narrow interface a job talks to (VM facts,
//     snapshots, CBT, changed areas, VM files, the HotAdd proxy).
//     NewVSphere adapts a vSphere connection.
//   - RestoreHypervisor: Hypervisor plus the restore side (create a VM
//     from a vmconfig, find, rename, destroy, power, changed areas of a
//     powered-off VM's disk, add and remove disks, the proxy to write
//     through, the restore marker). Restore, RestoreDisk and
//     CleanupRestores talk to it only; NewVSphere implements it too.
//   - Instant recovery (restore_instant.go): StartInstant serves a point
//     over NFS (backupd/nfsserve), mounts it on an ESXi host as datastore
//     cairn-<vm>-<point> and runs a VM of the point's vmconfig on it
//     (InstantHypervisor, which *vsphere.Conn implements); the
//     InstantSession then Migrates (Storage vMotion) or Stops; what a
//     killed session left, CleanupRestores and CleanupInstantDatastores
//     remove.
//   - Plan: per disk, full or incremental, the areas to read (or none
//     known: the source's allocation map), what they are relative to
//     (Since: a changeId, "*", a dirty bitmap) and why a disk is read in
//     full (Reason, kept in the point). planDisk decides it from CBT for
//     vSphere, planImport from flags and dirty bitmaps for an import.
//   - DiskRef: the plain data a Transport needs to open one frozen disk
//     (VM, snapshot, disk, datastore mapping, server, credentials); a
//     WriteTransport opens the same, without a snapshot, to write the
//     disk of a VM being restored (a DiskTarget).
//   - Transport: nbd (a server command template or URL), hotadd (attach
//     to the proxy VM) or file (a locally mounted datastore); tried in
//     the order given until one opens the disk (openFirst).
//   - Source: one disk to read (package source): an io.ReaderAt with its
//     size, allocated areas, changed areas where it knows them (qemu
//     dirty bitmaps), what the point records about it and its preferred
//     copy options.
//   - Copy: copyDisk, the one function that moves a plan's areas from a
//     source into a blockmap.DiskWriter, for imports and backups alike.
//   - Commit: the session's commit; a job that fails aborts its session,
//     so no half-written point is ever visible.
//   - VM lock: the repository's (blockmap.Repo.LockVM), one per VM, held
//     by a job from before its stale-snapshot cleanup to its commit and
//     passed down to BeginPoint through the context (blockmap.WithVMLock);
//     restores that overwrite a VM take it too (LockRestoreTarget).
//   - Slots: the caps on VM jobs running at once, in total and per host
//     (NewSlots), for BackupVMs and cairn serve alike.
//   - Hook: an administrator's command at a hook point (pre_snapshot,
//     post_snapshot, post_backup per VM; pre_job, post_job for serve),
//     run by RunHook in its own process group, killed with it at its
//     timeout, with CAIRN_* variables and no credentials in its
//     environment (childEnv); HookResult keeps the end of its output.
//     A pre hook's policy fails the VM (ErrHookFailed), skips it
//     (ErrSkippedByHook, job state skipped) or warns; post_snapshot runs
//     whenever pre_snapshot ran (hooks.go, hooks_job.go).
//
// The snapshot is removed, NBD servers are stopped and hot-added disks
// are detached on every path; what a killed run left behind is cleaned
// up by the next one. The new changeId is saved only with the committed
// point.
package backupd
