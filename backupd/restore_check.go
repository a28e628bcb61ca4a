package backupd

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// ErrNetworkNotInConfig is a network mapping (--network OLD=NEW) whose OLD
// no NIC of the VM's configuration is on: most likely a typo, which would
// otherwise leave the restored VM on the recorded network unnoticed.
var ErrNetworkNotInConfig = errors.New("no NIC of the point's VM is on that network")

// checkNetworkMap refuses a mapping of a network the configuration has no
// NIC on, naming the networks it has.
func checkNetworkMap(cfg *vmconfig.Config, networks map[string]string) error {
	have := map[string]bool{}
	for _, n := range cfg.NICs {
		have[n.Network] = true
	}
	var bad []string
	for old := range networks {
		if !have[old] {
			bad = append(bad, fmt.Sprintf("%q", old))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	var names []string
	for n := range have {
		names = append(names, fmt.Sprintf("%q", n))
	}
	sort.Strings(names)
	recorded := "none: the VM has no NIC"
	if len(names) > 0 {
		recorded = strings.Join(names, ", ")
	}
	return fmt.Errorf("network mapping of %s: %w (its networks: %s); map a recorded network (vm/config.json of the point lists them)",
		strings.Join(bad, ", "), ErrNetworkNotInConfig, recorded)
}
