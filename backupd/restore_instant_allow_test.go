package backupd

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
)

func TestInstantAllowIsTheHostAndThisMachine(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		host    string
		allowed []string
		refused []string
	}{
		{"10.20.30.40", []string{"10.20.30.40", "127.0.0.1"}, []string{"10.20.30.41"}},
		{"fd00::7", []string{"fd00::7", "::1"}, []string{"fd00::8", "10.20.30.40"}},
		{"localhost", []string{"127.0.0.1"}, []string{"10.20.30.40"}},
		{"DC0_H0", []string{"127.0.0.1"}, []string{"10.20.30.40", "192.168.1.1"}}, // vcsim's names do not resolve
	} {
		got := instantAllow(ctx, tc.host, slog.Default())
		contains := func(s string) bool {
			a := netip.MustParseAddr(s)
			return slices.ContainsFunc(got, func(p netip.Prefix) bool { return p.Contains(a) })
		}
		for _, s := range tc.allowed {
			if !contains(s) {
				t.Errorf("host %s: %s not allowed (%v)", tc.host, s, got)
			}
		}
		for _, s := range tc.refused {
			if contains(s) {
				t.Errorf("host %s: %s allowed (%v)", tc.host, s, got)
			}
		}
	}
}
