// Package nbd is cairn's own Network Block Device client, written from the
// NBD protocol specification.
//
// It speaks the fixed newstyle handshake (falling back to plain newstyle,
// NBD_OPT_EXPORT_NAME and oldstyle servers), NBD_OPT_GO/NBD_OPT_INFO with
// export and block-size information, optional NBD_OPT_STARTTLS, structured
// replies and metadata contexts (base:allocation, qemu:dirty-bitmap:NAME).
//
// A Client is a pool: it keeps one connection, or Options.Connections when
// the server advertises NBD_FLAG_CAN_MULTI_CONN, pipelines up to
// Options.MaxInFlight requests on each (one reader goroutine per
// connection demuxes replies by cookie), retries transient failures with
// exponential backoff, reconnects dropped or stalled connections and
// re-issues the requests that were in flight.
//
// A server is not trusted to be finite: every input-driven structure has a
// bound. Block status is streamed and kept in at most MaxExtents areas
// (widened, never narrowed, past that); a request takes one block-status
// chunk per negotiated context and at most 64 error chunks; handshake
// replies are capped. A protocol violation drops the connection, is logged
// and is not retried. All attempts of the first dial share
// Options.DialTimeout, and the retries after a stall share half of
// Options.StallTimeout. backupd/nbd/nbdtest is a hostile server for tests.
//
// Typical use by a backup:
//
//	c, err := nbd.Dial(ctx, "nbd+unix:///disk?socket=/run/nbd.sock", nbd.Options{
//		MetaContexts: []string{nbd.ContextDirtyBitmapPrefix + "backup-1"},
//	})
//	if err != nil { ... }
//	defer c.Close()
//	areas, err := c.AllocatedExtents(ctx) // or c.DirtyExtents(ctx, "backup-1")
//	for _, a := range areas {
//		buf := make([]byte, a.Length) // in practice, bounded windows
//		_, err := c.ReadAt(ctx, buf, a.Offset)
//		...
//	}
package nbd
