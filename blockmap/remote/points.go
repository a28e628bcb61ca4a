package remote

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cairnbackup/cairn/blockmap"
)

// BadObject is a remote object cairn cannot use.
type BadObject struct {
	Object string `json:"object"`
	Err    string `json:"error"`
}

// Points lists the remote's recovery points by VM and time, and the
// manifests that cannot be read (damaged, or written with another key).
func (r *Remote) Points(ctx context.Context) ([]blockmap.Point, []BadObject, error) {
	ms, bad, err := r.manifests(ctx)
	if err != nil {
		return nil, nil, err
	}
	pts := make([]blockmap.Point, len(ms))
	for i, m := range ms {
		pts[i] = m.Point
	}
	return pts, bad, nil
}

// manifests reads every manifest. With Object Lock, names hidden by a
// delete marker are listed too: deleting a locked manifest's name does not
// hide its point.
func (r *Remote) manifests(ctx context.Context) ([]*manifest, []BadObject, error) {
	objs, err := r.st.list(ctx, pointsPrefix, r.opts.ImmutableDays > 0)
	if err != nil {
		return nil, nil, err
	}
	var out []*manifest
	var bad []BadObject
	for _, o := range objs {
		name := strings.TrimPrefix(o.Name, pointsPrefix)
		m, err := r.readManifest(ctx, name)
		if err != nil {
			if errors.Is(err, ErrAccessDenied) || ctx.Err() != nil {
				return nil, nil, err
			}
			bad = append(bad, BadObject{Object: o.Name, Err: err.Error()})
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Point, out[j].Point
		if a.VM != b.VM {
			return a.VM < b.VM
		}
		return a.Time.Before(b.Time) || a.Time.Equal(b.Time) && a.ID < b.ID
	})
	return out, bad, nil
}

func (r *Remote) readManifest(ctx context.Context, name string) (*manifest, error) {
	var m *manifest
	err := r.readVersions(ctx, pointsPrefix+name, func(data []byte) error {
		mm, err := r.openManifest(name, data)
		if err != nil {
			return err
		}
		if r.keys.manifestName(mm.Point.VM, mm.Point.ID) != name {
			return fmt.Errorf("manifest %s: %w: holds point %s of %s", name, ErrCorrupt, mm.Point.ID, mm.Point.VM)
		}
		m = mm
		return nil
	})
	return m, err
}

// Manifest reads the manifest of one point.
func (r *Remote) manifest(ctx context.Context, vm, id string) (*manifest, error) {
	m, err := r.readManifest(ctx, r.keys.manifestName(vm, id))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("point %s of %s: %w", id, vm, ErrNotFound)
	}
	return m, err
}
