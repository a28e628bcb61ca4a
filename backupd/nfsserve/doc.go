// Package nfsserve serves a recovery point over NFSv3, so that a
// hypervisor that mounts NFS datastores (ESXi) or any NFS client (libnfs,
// qemu's nfs:// driver) runs a VM straight from the point: instant
// recovery. backupd/nbdserve is the NBD twin for qemu and nbd clients.
//
// Vocabulary:
//
//   - Session: one export of one point, kept in a session directory:
//     session.json (VM, point, disks), overlays/ (one sparse overlay per
//     disk, the nbdserve overlay) and files/ (the exported tree). A
//     session directory reopened by a later export continues it; one of
//     another point is refused (ErrOtherSession).
//   - Exported tree: files/ (the scratch directory, a plain directory
//     taking whatever the hypervisor creates: .vmx, .nvram, .vswp, logs,
//     lock files) with, at its top, each disk of the point as a VMware
//     flat file NAME-flat.vmdk and its descriptor NAME.vmdk (a real file
//     in files/, written once). NAME is the disk's name with characters
//     other than letters, digits, '.', '_' and '-' made '_'.
//   - Flat file: reads come from the point, except 4 KiB blocks written
//     in this session, which come from the disk's overlay; writes go to
//     the overlay only. The point is never written. A flat file has the
//     disk's size: it does not grow, shrink, or get renamed; removing it
//     (Storage vMotion removes the source disk after copying it) hides it
//     for the rest of the session.
//   - File handle: 4 bytes of the session's identity and 12 bytes of the
//     SHA-256 of the file's path, so handles stay valid when the export is
//     restarted on the same session directory.
//   - Export path: ExportPath ("/cairn"; "/" is taken too): clients
//     mount HOST:/cairn and read nfs://HOST/cairn/NAME-flat.vmdk.
//   - Portmapper: NFS clients (ESXi, libnfs) ask the ONC RPC portmapper
//     on port 111 where MOUNT (and NFS) answer; Portmapper answers that
//     for an export on a host without rpcbind.
//   - Allow list: the addresses and networks that may connect (NFS,
//     MOUNT, portmapper), checked per connection; Loopback by default.
//   - Call check: each RPC record's header and argument lengths are
//     checked before go-nfs decodes it (it allocates what a length field
//     claims); a malformed call ends its connection. Names must be one
//     path component; SYMLINK is refused; scratch writes keep
//     Options.MinFree free (guard.go, docs/security.md).
//
// Protocol: NFSv3 (RFC 1813) by github.com/willscott/go-nfs over TCP
// (its billy-filesystem interface takes the tree above), except READ and
// WRITE of a flat file: the fast path (fastpath.go) answers those itself,
// several at a time per connection, straight from and to the overlay,
// and passes every other call to go-nfs in order; MOUNT v3 (MNT,
// UMNT, EXPORT, ...) and portmapper v2 (GETPORT, DUMP) are answered here
// (go-nfs has no EXPORT call, which libnfs makes). go-nfs answers every
// WRITE as FILE_SYNC; the overlays are flushed every Options.SyncEvery
// and when the export stops, so an appliance crash loses at most the
// writes of that interval. No authentication: the export is for the
// hypervisor's storage network, restricted by the allow list (see
// docs/restore.md).
package nfsserve
