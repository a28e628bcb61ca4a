// Package nbd is cairn's own Network Block Device client, written from the
// NBD protocol specification.
//
// It speaks the fixed newstyle handshake (with fallbacks to plain newstyle
// and oldstyle servers), NBD_OPT_GO/NBD_OPT_INFO with export and block-size
// information, optional NBD_OPT_STARTTLS, structured replies and metadata
// contexts (base:allocation, qemu:dirty-bitmap:NAME). A Client keeps one or
// more connections (several only when the server advertises
// NBD_FLAG_CAN_MULTI_CONN), pipelines many requests on each, retries
// transient failures with exponential backoff, reconnects dropped or
// stalled connections and re-issues the requests that were in flight.
//
// The backup code uses Dial, Client.ReadAt and Client.BlockStatus (or the
// AllocatedExtents and DirtyExtents helpers).
package nbd
