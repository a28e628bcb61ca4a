package remote

import (
	"context"
	"fmt"
	"time"
)

// ExtendStats count what Extend did.
type ExtendStats struct {
	// Objects are the objects retained points still need (config,
	// manifests, block maps, packs and their indexes).
	Objects int `json:"objects"`
	// Extended got a new retain-until date; the rest kept theirs.
	Extended int `json:"extended"`
	// Requests is the number of requests made (one GET retention per
	// object, one PUT retention per extended object).
	Requests int `json:"requests"`
}

// Extend renews the Object Lock retention of every object that the
// remote's points still reference: an object whose retention ends within
// half of ImmutableDays gets a new date ImmutableDays from now. Run it at
// least every ImmutableDays/2 days (replicate runs it after each
// replication); it costs one GET per referenced object and one PUT per
// renewed one, so about two requests per object every ImmutableDays/2
// days.
func (r *Remote) Extend(ctx context.Context) (*ExtendStats, error) {
	days := r.opts.ImmutableDays
	if days <= 0 {
		return nil, fmt.Errorf("extend: %w", ErrNoRetention)
	}
	ms, bad, err := r.manifests(ctx)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		r.log.Warn("manifests that cannot be read keep their own retention", "count", len(bad), "first", bad[0].Object)
	}
	type obj struct{ name, version string }
	seen := map[obj]bool{}
	var objs []obj
	add := func(o obj) {
		if !seen[o] {
			seen[o] = true
			objs = append(objs, o)
		}
	}
	// cairn writes each name once: the oldest data version of a config,
	// manifest or index name is cairn's (later ones are someone else's).
	oldest, err := r.st.oldestVersions(ctx, prefix)
	if err != nil {
		return nil, err
	}
	// The config's version is the one cairn wrote last (after a rekey,
	// the old versions are left to expire: prune deletes them).
	cfgVersion, sealed, _, err := r.currentConfig(ctx)
	if err != nil {
		return nil, err
	}
	if !sealed {
		cfgVersion = oldest[configName]
	}
	add(obj{name: configName, version: cfgVersion})
	for _, m := range ms {
		name := pointsPrefix + r.keys.manifestName(m.Point.VM, m.Point.ID)
		add(obj{name: name, version: oldest[name]})
		if m.Map != nil {
			add(obj{name: m.Map.object(), version: m.Map.Version})
		}
		for _, p := range m.Packs {
			add(obj{name: packPrefix + p.ID, version: p.Version})
			add(obj{name: indexPrefix + p.ID, version: oldest[indexPrefix+p.ID]})
		}
	}
	st := &ExtendStats{Objects: len(objs)}
	now := time.Now()
	renewBefore := now.Add(time.Duration(days) * 12 * time.Hour)
	until := now.Add(time.Duration(days) * 24 * time.Hour)
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		cur, err := r.st.retention(ctx, o.name, o.version)
		st.Requests++
		if err != nil {
			return st, fmt.Errorf("extend: %w", err)
		}
		if cur.After(renewBefore) {
			continue
		}
		if err := r.st.setRetention(ctx, o.name, o.version, until); err != nil {
			return st, fmt.Errorf("extend: %w", err)
		}
		st.Requests++
		st.Extended++
	}
	return st, nil
}
