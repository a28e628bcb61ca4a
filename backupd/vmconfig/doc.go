// Package vmconfig is the configuration of a virtual machine as a recovery
// point records it: what is needed to rebuild or boot the machine from its
// disks. It is a leaf package (no vSphere, no repository) so that the
// backup engine, the CLI and the boot tools share one type.
//
// Vocabulary:
//
//   - Config: the VM at backup time: identity (name, BIOS and instance
//     UUIDs, guest OS id, hardware version), firmware (bios or efi, secure
//     boot), CPUs, cores per socket, memory, and its devices.
//   - Controller: a disk controller, by type (pvscsi, lsilogic,
//     lsilogic-sas, buslogic, ahci, nvme, ide) and bus number; Key is the
//     device key disks refer to.
//   - Disk: a virtual disk on a controller (type, bus, unit), with its
//     capacity, provisioning (thin, thick, eager) and cairn disk name (the
//     name of the disk in the point, "scsi0-0").
//   - NIC: a network adapter (vmxnet3, e1000, e1000e, vmxnet2, pcnet32,
//     sriov), its MAC and the network it is connected to.
//   - Placement: where the VM lived in vSphere at backup time (datacenter,
//     folder and resource pool inventory paths, cluster, host, the
//     datastore of its files); each Disk names its own datastore. Optional:
//     older points and imports have none.
//   - ExtraConfig: the VM's advanced settings without secrets: keys that
//     look like secrets are dropped by SecretKey (see there for the rule)
//     and listed by name only in DroppedExtraConfig.
//
// Points carry a Config as the attachment named AttachmentConfig
// ("vm/config.json"); the datastore's .vmx and .nvram files, when they
// were downloaded, as "vm/<name>.vmx" and "vm/<name>.nvram". Parse checks
// a JSON document strictly and names the field that is wrong.
package vmconfig
