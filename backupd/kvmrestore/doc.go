// Package kvmrestore restores a recovery point of a vSphere VM to KVM:
// every disk written as a file (sparse qcow2 or raw) read straight from
// the repository, and a libvirt domain XML made from the point's VM
// configuration, optionally defined (and started) with virsh.
//
// Vocabulary:
//
//   - Spec: what the caller chooses (target directory, domain name, disk
//     format, bus, network mapping, MAC policy, serial console, domain
//     type).
//   - Plan: the domain as it will be written: one PlannedDisk per disk of
//     the point (file, bus, target device, boot order), the NICs, the
//     firmware files, and two lists for people: NotCarried (what the VM
//     had and the domain cannot have: vTPM, PCI passthrough, disks the
//     point holds no data of, VMware-only devices, ISO images on a
//     datastore) and Notes (what was decided and why). MakePlan is pure:
//     no file is read or written.
//   - Guest OS family: OSLinux, OSWindows or OSOther, from the recorded
//     guest id (vSphere's guestId, "debian12_64Guest",
//     "windows2019srv_64Guest"). It decides the bus (BusAuto: virtio-scsi
//     for Linux, SATA for Windows, whose stock drivers have no virtio, the
//     controller a boot check uses for other guests) and the NIC model
//     (virtio, e1000e, the boot check's).
//   - Network target: where a recorded vSphere network goes: a libvirt
//     network ("default"), "bridge:BR", "user" (user-mode networking) or
//     "none" (the NIC is left out). A NIC whose network has no target is
//     refused (UnmappedError) unless Spec.NetworkDefault gives one.
//   - Write: Restore writes every file under a temporary name beside its
//     final one (".NAME.cairn-partial") and renames them only when all
//     are complete, so a failed or cancelled restore leaves no file under
//     a final name (and removes its temporary files); an existing final
//     file is refused (ExistsError) unless Spec.Force.
//
// The device mapping (controller types, NIC models, boot order, OVMF
// files) is backupd/boot's: a restored domain and a boot check see the
// same machine.
package kvmrestore
