package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// readVMConfigFlag reads and validates the --vm-config file of an import
// and returns it as the point's attachment. Every disk the configuration
// lists must be one of the imported disks.
func readVMConfigFlag(path string, disks []string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--vm-config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("--vm-config %s: %w", path, err)
	}
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("--vm-config %s: larger than 1 MiB: not a VM configuration", path)
	}
	cfg, err := vmconfig.Parse(data)
	if err != nil {
		var fe *vmconfig.FieldError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("--vm-config %s: field %q: %s (the format is that of a point's vm/config.json, see docs/repository.md)", path, fe.Field, fe.Msg)
		}
		return nil, fmt.Errorf("--vm-config %s: %w (the format is that of a point's vm/config.json, see docs/repository.md)", path, err)
	}
	for i, d := range cfg.Disks {
		found := false
		for _, n := range disks {
			found = found || n == d.Name
		}
		if !found {
			return nil, fmt.Errorf("--vm-config %s: field \"disks[%d].name\": disk %q is not imported (--disk gives %v): name the config's disks as the --disk names", path, i, d.Name, disks)
		}
	}
	out, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	return map[string][]byte{vmconfig.AttachmentConfig: out}, nil
}
