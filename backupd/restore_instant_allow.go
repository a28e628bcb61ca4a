package backupd

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/cairnbackup/cairn/backupd/nfsserve"
)

// instantAllow is the default allow list of an instant recovery's export:
// the addresses of the ESXi host that mounts it (its name in vCenter,
// often an address itself, resolved) and this machine. When the name
// does not resolve only this machine is allowed, with a warning that
// names the fix (--allow).
func instantAllow(ctx context.Context, host string, log *slog.Logger) []netip.Prefix {
	out := append([]netip.Prefix(nil), nfsserve.Loopback...)
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		return append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		log.Warn("the ESXi host's name does not resolve here: the NFS export answers this machine only; give --allow with the host's storage address",
			"host", host, "err", err)
		return out
	}
	for _, a := range addrs {
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	log.Info("the NFS export answers the ESXi host only (--allow changes it)", "host", host, "allow", out)
	return out
}
