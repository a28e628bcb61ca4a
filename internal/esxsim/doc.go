// Package esxsim is a simulated vCenter/ESXi for cairn's tests and for
// `cairn lab`: govmomi's vcsim (v0.52.0) made to behave like ESXi where a
// backup cares, reachable only through the ordinary vSphere SOAP API.
//
// Start(ctx, Options) serves one datacenter (DC0) with Options.Hosts
// standalone hosts (DC0_H0, DC0_H1, ...; default one, names in Sim.Hosts),
// one local datastore ("datastore1") on a real directory mounted on every
// host, and the VMs the options ask for, on https://127.0.0.1:PORT/sdk with
// a fresh self-signed certificate (Sim.Thumbprint, Sim.CertificatePEM).
// The package does not import testing; the esxsimtest subpackage has the
// test helpers.
//
// # Inventory
//
//   - VMSpec.Host places a VM on a host (its runtime.host); VMSpec.Folder
//     ("prod/web") creates the folders below DC0/vm and the VM in them, so
//     its inventory path is /DC0/vm/prod/web/NAME; VMSpec.ResourcePool
//     ("webpool") puts it in a resource pool of that name below its host's
//     root pool (/DC0/host/DC0_H1/Resources/webpool); VMSpec.Template marks
//     it as a template.
//   - Options.ExtraDatastores adds datastores beside the default one, each
//     on a temporary directory of its own (Sim.DatastoreDirOf) and mounted
//     on every host; DiskSpec.Datastore puts a disk's files there
//     ("[ds2] vm1/vm1_1.vmdk", the VM's directory made on ds2 as vSphere
//     clients do). Destroying a VM deletes its directories on every
//     datastore, as ESXi deletes a VM's disks wherever they are. There are
//     no clusters (use vcsim's own model for those).
//   - VMSpec.Tags ("category:tag") are created and attached through the
//     vSphere Automation API: the same HTTPS server serves govmomi's vAPI
//     simulator on /rest (sessions with the same credentials, tag
//     categories, tags, associations), so govmomi's vapi/tags and
//     `govc tags.*` work against it. Sim.TagVM tags a VM later.
//
// # Faithful to ESXi
//
//   - Disks are real files: "[datastore1] vm1/vm1.vmdk" (descriptor with
//     ddb.uuid, createType vmfs) and vm1/vm1-flat.vmdk (sparse raw data,
//     exactly the capacity), the second disk vm1_1.vmdk, and so on. qemu-img,
//     qemu-nbd and nbdkit open them. Controllers and keys follow ESXi:
//     pvscsi key 1000 with disks 2000+unit on scsi0:N, AHCI 15000 (sata0:N,
//     keys 16000+), NVMe 31000 (nvme0:N, keys 32000+). backing.uuid is a
//     per-disk 6000C29x-... uuid, also in the descriptor.
//   - VM files: each VM's directory holds a .vmx rendered from its
//     configuration as ESXi writes it (rewritten after every
//     ReconfigVM_Task) and a .nvram firmware image (the MRVN container:
//     CMOS for BIOS VMs, a variable store for EFI ones); the datastore's
//     HTTP interface (/folder, govmomi's Datastore.Download) serves them.
//     VMSpec sets firmware and secure boot, CPUs, cores per socket,
//     memory, guest id, the SCSI controller type (pvscsi, lsilogic,
//     lsilogic-sas, buslogic), NICs (vmxnet3, e1000, e1000e), an IDE
//     CD-ROM, annotation, extraConfig, and per disk thin, thick or eager
//     provisioning. Sim.VMXPath and Sim.NVRAMPath give their local paths.
//   - Login accepts only Sim.User/Sim.Password (InvalidLogin otherwise).
//   - CreateSnapshot_Task/CreateSnapshotEx_Task freeze every disk: the flat
//     file is cloned (FICLONE reflink, else a hole-preserving copy) to
//     vm1/vm1-00000N-flat.vmdk with a descriptor, and the snapshot's
//     config.hardware.device disks point at the frozen copy, carrying the
//     changeId of that moment in backing.changeId. Guest writes after it
//     never reach the frozen copy. RemoveSnapshot_Task and
//     RemoveAllSnapshots_Task delete the frozen copies. Snapshot names stay
//     in the VM's snapshot tree, so stale "cairn-*" snapshots can be found.
//   - Quiesced snapshots of a VM with VMSpec.FailQuiesce (or SetFailQuiesce)
//     fail through the task with ApplicationQuiesceFault ("An error occurred
//     while quiescing the virtual machine ..."); crash-consistent ones work.
//   - Changed Block Tracking: ReconfigVM_Task with changeTrackingEnabled
//     switches it on/off (a new epoch each time). QueryChangedDiskAreas
//     answers "*" with the allocated, non-zero 64 KiB blocks of the disk at
//     the snapshot, and "<epoch>/<seq>" with the blocks written since that
//     changeId was handed out, merged into extents. Answers are paged as on
//     ESXi: startOffset is the one asked for, and a page covers at most
//     DefaultMaxPageBytes (512 MiB) of the disk and at most
//     Options.MaxChangedAreas extents (clipped to the page), its length
//     reaching only to the end of the last extent when more begin inside
//     it (else to the page's end, at most the disk's). A page over an
//     unchanged stretch has a length and no changedArea, so callers must
//     loop on startOffset until the capacity and never stop at an empty
//     page. A changeId of another epoch
//     (after ResetCBT, a disk extend, or CBT off/on) fails with FileFault
//     "Error caused by file ..."; a malformed or future changeId, an unknown
//     deviceKey or an offset outside the disk with InvalidArgument; a disk
//     without CBT with FileFault. Without a snapshot the VM must be powered
//     off, as on ESXi.
//   - Hardware version vmx-04 VMs report capability.changeTrackingSupported
//     false and refuse changeTrackingEnabled with NotSupported.
//   - Extending a disk (ReconfigVM_Task edit with a larger capacity, or the
//     GrowDisk back door, which uses the same call) grows the flat file and
//     starts a new CBT epoch for that disk: old changeIds fail and the next
//     backup must read everything. Shrinking is refused, as on ESXi.
//   - HotAdd: ReconfigVM_Task on a proxy VM adding a VirtualDisk whose
//     backing fileName is an existing file (a snapshot's frozen disk, or
//     another VM's disk) attaches it unchanged, with that disk's uuid and
//     capacity; removing it without fileOperation=destroy keeps the file.
//     While a frozen disk is attached, removing its snapshot fails with
//     FileLocked.
//
// # Not faithful
//
//   - The running disk keeps its file name after a snapshot; ESXi would
//     switch the VM to a delta (vm1-000001.vmdk) and keep the base as the
//     snapshot's disk. Here the frozen copy carries the -00000N name and
//     the base keeps changing. Backups that read the snapshot's own
//     config (the correct way) see no difference.
//   - Snapshot copies are full clones (cheap with reflink), not deltas;
//     RevertToSnapshot does not restore disk contents.
//   - CBT takes effect at once (ESXi needs a stun/unstun: power cycle or
//     snapshot); CBT granularity is a fixed 64 KiB and the page bound a
//     fixed DefaultMaxPageBytes (ESXi's page lengths vary); "*" reports
//     non-zero blocks, so zeros the guest wrote are not "allocated" (an
//     incremental query does report them as changed).
//   - Flat disks, and RDMs whose "LUN" is a flat file (DiskSpec.RDM; vcsim's
//     own storage code sees their backings as flat while it runs, see
//     edges.go); no vVols, no NFC/HTTP disk transfer, no VDDK/NBD service:
//     tests serve the local flat files (Sim.LocalPath, DiskInfo.LocalPath)
//     with qemu-nbd/nbdkit.
//   - Task progress is not simulated; snapshot and reconfigure tasks are
//     complete when the call returns.
//   - Fault types follow ESXi; the message texts are approximations.
//
// # Back doors (not vSphere API)
//
// GuestWriter (Sim.Guest) writes to a running disk as a guest would and
// records the change (WriteAt, WriteRandom, WriteRandomBlocks, WriteZeros,
// Grow, and SyncFromImage, which copies in only the 64 KiB blocks of a raw
// image that differ, so a filesystem built and changed with real tools
// lands as an exact CBT delta); Sim.SilentlyMissChange writes without recording it
// (to exercise verify --against-source); Sim.ResetCBT, Sim.GrowDisk,
// Sim.SetFailQuiesce, Sim.SetSnapshotFault, Sim.EditVM and
// Sim.SetDatastoreAccessible change behaviour (edges.go: independent
// disks, RDMs, VMs that cannot be snapshotted); Sim.Disks, Sim.SnapshotDisks,
// Sim.LocalPath, Sim.DeviceLocalPath and Sim.Journal inspect state.
//
// # How the calls are intercepted
//
// vcsim dispatches a SOAP call to the object its session finds for the
// call's This, so wrapping the VirtualMachine in the registry would break
// vcsim's own type assertions. Instead esxsim sets Registry.Handler to
// redirect the methods it implements (QueryChangedDiskAreas, CreateSnapshot
// _Task, CreateSnapshotEx_Task, ReconfigVM_Task, RemoveAllSnapshots_Task,
// RemoveSnapshot_Task) to one registered router object, which locks the
// real VM (or snapshot) and runs a handler that embeds vcsim's object,
// delegating to vcsim where it already does the right thing.
package esxsim
