package serve

import (
	"strings"
	"testing"
)

// TestConfigInstant reads the instant: section: defaults, values, and a
// clear error naming the key for each bad value.
func TestConfigInstant(t *testing.T) {
	base := "repository: /srv/repo\n"
	cfg, err := ParseConfig("cairn.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if ic := cfg.instantConfig(); ic.MaxSessions != DefaultInstantSessions || ic.SessionDir != DefaultInstantDir || ic.NFSPort != 2049 || ic.PortmapPort != 111 || ic.NFSHost != "" {
		t.Errorf("defaults: %+v", ic)
	}
	if ic := (&Config{}).instantConfig(); ic != defaultInstant() {
		t.Errorf("a Config made in code: %+v", ic)
	}
	cfg, err = ParseConfig("cairn.yaml", []byte(base+"instant:\n  max_sessions: 3\n  session_dir: /var/tmp/inst\n  nfs_host: 10.0.0.5\n  nfs_port: 0\n  portmap_port: 1111\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ic := cfg.Instant; ic.MaxSessions != 3 || ic.SessionDir != "/var/tmp/inst" || ic.NFSHost != "10.0.0.5" || ic.NFSPort != 0 || ic.PortmapPort != 1111 {
		t.Errorf("values: %+v", ic)
	}
	for _, tc := range []struct{ body, want string }{
		{"max_sessions: -1", "max_sessions"},
		{"max_sessions: 65", "max_sessions"},
		{"max_sessions: many", "max_sessions"},
		{"nfs_port: 70000", "nfs_port"},
		{"portmap_port: 0", "portmap_port"},
		{"nfs_host: appliance.example", "nfs_host"},
		{"sessions: 2", "sessions"},
	} {
		_, err := ParseConfig("cairn.yaml", []byte(base+"instant:\n  "+tc.body+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !IsConfigError(err) {
			t.Errorf("instant: %s: %v (want a config error naming %s)", tc.body, err, tc.want)
		}
	}
}
