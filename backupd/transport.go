package backupd

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// Transport names.
const (
	TransportNBD    = "nbd"
	TransportHotAdd = "hotadd"
	TransportFile   = "file"
)

// DefaultTransports is the order tried when none is given.
var DefaultTransports = []string{TransportHotAdd, TransportNBD}

// ParseTransports checks a comma-separated transport list.
func ParseTransports(s string) ([]string, error) {
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "":
			continue
		case TransportNBD, TransportHotAdd, TransportFile:
			out = append(out, t)
		default:
			return nil, fmt.Errorf("transport %q: use nbd, hotadd or file", t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no transport given: use nbd, hotadd or file")
	}
	return out, nil
}

// source is an opened snapshot disk.
type source interface {
	io.ReaderAt
	// Allocated lists the areas worth reading when CBT cannot tell.
	Allocated(ctx context.Context) ([]blockmap.Extent, error)
	Close() error
}

// opener opens one frozen disk of a snapshot through one transport.
type opener func(ctx context.Context, j *vmJob, d vsphere.Disk) (source, error)

func (j *vmJob) opener(name string) opener {
	switch name {
	case TransportNBD:
		return openNBD
	case TransportHotAdd:
		return openHotAdd
	default:
		return openFile
	}
}

// openSource tries the transports in order and returns the first that
// opens the disk, with its name.
func (j *vmJob) openSource(ctx context.Context, d vsphere.Disk) (source, string, error) {
	var errs []string
	for _, t := range j.opts.Transports {
		src, err := j.opener(t)(ctx, j, d)
		if err == nil {
			return src, t, nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		j.log.Warn("transport failed; trying the next", "vm", j.vm.Name, "disk", d.Name, "transport", t, "error", err)
		errs = append(errs, t+": "+err.Error())
	}
	return nil, "", fmt.Errorf("disk %s: no transport could open it (%s)", d.Name, strings.Join(errs, "; "))
}
