package vsphere

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
)

// DatastoreDirs maps datastore names to directories on this machine where
// their files can be read (NFS datastores mounted on the appliance, or the
// simulator's local datastore).
type DatastoreDirs map[string]string

// LocalDatastores asks the server for every datastore's URL and keeps those
// that are directories on this machine; extra entries (from
// --datastore-dir NAME=DIR) take precedence.
func (c *Conn) LocalDatastores(ctx context.Context, extra DatastoreDirs) (DatastoreDirs, error) {
	out := DatastoreDirs{}
	m := view.NewManager(c.Client)
	v, err := m.CreateContainerView(ctx, c.Client.ServiceContent.RootFolder, []string{"Datastore"}, true)
	if err != nil {
		return nil, fmt.Errorf("list datastores: %w", err)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var dss []mo.Datastore
	if err := v.Retrieve(ctx, []string{"Datastore"}, []string{"name", "summary"}, &dss); err != nil {
		return nil, fmt.Errorf("list datastores: %w", err)
	}
	for _, ds := range dss {
		if dir := localDir(ds.Summary.Url); dir != "" {
			out[ds.Name] = dir
		}
	}
	for k, d := range extra {
		out[k] = d
	}
	return out, nil
}

// localDir turns a datastore URL into a local directory if it is one.
func localDir(u string) string {
	p := u
	if strings.Contains(u, "://") {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "file" && pu.Scheme != "ds") {
			return ""
		}
		p = pu.Path
	}
	if !filepath.IsAbs(p) {
		return ""
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return p
	}
	return ""
}

// DatastoreNotLocalError means a datastore has no local directory in
// DatastoreDirs: the CLI says how to give one.
type DatastoreNotLocalError struct{ Datastore string }

func (e *DatastoreNotLocalError) Error() string {
	return fmt.Sprintf("datastore %s is not reachable from this machine", e.Datastore)
}

// LocalPath maps a datastore path ("[ds] vm/vm.vmdk") to the local file of
// its raw data: the flat extent named in the descriptor (or the file itself
// when it is not a descriptor).
func (d DatastoreDirs) LocalPath(dsPath string) (string, error) {
	var p object.DatastorePath
	if !p.FromString(dsPath) || p.Path == "" {
		return "", fmt.Errorf("%q is not a datastore path", dsPath)
	}
	dir, ok := d[p.Datastore]
	if !ok {
		return "", &DatastoreNotLocalError{Datastore: p.Datastore}
	}
	rel := filepath.Clean(filepath.FromSlash(p.Path))
	if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("datastore path %q leaves the datastore", dsPath)
	}
	desc := filepath.Join(dir, rel)
	flat, err := flatExtent(desc)
	if err != nil {
		return "", fmt.Errorf("disk %s: %w", dsPath, err)
	}
	return flat, nil
}

// ErrNotFlat means a disk file is not a flat raw extent that the file
// transport can read: a snapshot delta (the VM has snapshots of its own
// below the backup's), a sparse disk or a raw device mapping.
var ErrNotFlat = errors.New("not a flat disk")

// extentError explains an extent the file transport cannot read.
func extentError(path, kind string, child bool) error {
	switch {
	case child || kind == "VMFSSPARSE" || kind == "SESPARSE":
		return fmt.Errorf("descriptor %s: extent type %s is a snapshot delta (the VM has snapshots of its own, so the backup snapshot's disk is a chain of deltas): %w; "+
			"the file transport reads flat disks only: use the nbd or hotadd transport, or delete or consolidate the VM's snapshots", path, kind, ErrNotFlat)
	case kind == "VMFSRDM" || kind == "VMFSRAW":
		return fmt.Errorf("descriptor %s: extent type %s maps a raw device (RDM): %w; the file transport cannot read the LUN: use the nbd or hotadd transport", path, kind, ErrNotFlat)
	}
	return fmt.Errorf("descriptor %s: extent type %s is not a flat raw extent: %w; use the nbd or hotadd transport", path, kind, ErrNotFlat)
}

// flatExtent reads a VMDK descriptor and returns the local path of its
// single flat extent; a file that is no descriptor is returned as is.
func flatExtent(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if !strings.Contains(string(head), "createType") {
		return path, nil
	}
	var extents []string
	sc := bufio.NewScanner(strings.NewReader(string(head)))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 4 && (fields[0] == "RW" || fields[0] == "RDONLY") {
			name := strings.Trim(strings.Join(fields[3:], " "), `"`)
			if i := strings.Index(name, `" `); i >= 0 {
				name = name[:i]
			}
			if fields[2] != "VMFS" && fields[2] != "FLAT" {
				return "", extentError(path, fields[2], strings.Contains(string(head), "parentFileNameHint"))
			}
			extents = append(extents, name)
		}
	}
	if len(extents) != 1 {
		return "", fmt.Errorf("descriptor %s: want one flat extent, found %d", path, len(extents))
	}
	if filepath.IsAbs(extents[0]) {
		return extents[0], nil
	}
	return filepath.Join(filepath.Dir(path), extents[0]), nil
}
