// Package nbdserve serves one disk of a recovery point over NBD, so that
// qemu, qemu-img, nbdcopy, nbdkit or the kernel's nbd client can use a
// point directly (instant recovery, booting, copying) without exporting
// it first. backupd/nbd is the client side; this is the server.
//
// Vocabulary:
//
//   - Source: what is served: an io.ReaderAt with a size and a data/hole
//     map (NextData, NextHole), which blockmap.DiskReader is.
//   - Export: a Source, optionally with an Overlay, as NBD sees it: its
//     size and transmission flags. Read-only unless there is an overlay.
//   - Overlay: a sparse local file of the disk's size that takes every
//     write (WRITE, TRIM and WRITE_ZEROES become writes of zeros). A
//     region is "written" when the overlay file has it allocated; a
//     partial write of a 4 KiB overlay block first copies the block from
//     the source, so an overlay file can be reused by a later export. The
//     source is never written.
//   - Server: accepts NBD clients on a listener (TCP or unix socket).
//
// Protocol: fixed newstyle handshake (NBD_OPT_EXPORT_NAME, INFO, GO,
// LIST, ABORT, STRUCTURED_REPLY, LIST_META_CONTEXT, SET_META_CONTEXT),
// simple or structured replies, and the base:allocation metadata context
// answered from the point's block map (holes are NBD_STATE_HOLE|ZERO), so
// qemu-img convert, nbdcopy and nbdinfo --map skip holes. Any number of
// clients at once (NBD_FLAG_CAN_MULTI_CONN); each connection handles up
// to 16 requests at a time. A client that disconnects mid-request ends
// only its own connection.
package nbdserve
