package remote

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// blockCache knows which blocks the remote holds. It is a directory of the
// remote's decrypted pack indexes (one file per pack), kept in step with
// the remote on every load: indexes the remote lacks are dropped, indexes
// it has are fetched, and entries of packs that are gone are forgotten (so
// their blocks are uploaded again). Deleting the directory only costs one
// GET per pack on the next run.
type blockCache struct {
	dir string

	mu    sync.Mutex
	blobs map[ID]blobRef
	packs map[ID]string // pack → version
}

// loadCache brings the block cache in dir in step with the remote.
func (r *Remote) loadCache(ctx context.Context, dir string) (*blockCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("block cache: %w", err)
	}
	c := &blockCache{dir: dir, blobs: map[ID]blobRef{}, packs: map[ID]string{}}
	// The two listings and the local indexes are read at once: each is a
	// round trip or a directory read the others need not wait for.
	var (
		wg          sync.WaitGroup
		idxs, packs []objectInfo
		ierr, perr  error
		local       map[string]*packIndex
	)
	wg.Add(3)
	go func() { defer wg.Done(); idxs, ierr = r.st.list(ctx, indexPrefix, false) }()
	go func() { defer wg.Done(); packs, perr = r.st.list(ctx, packPrefix, false) }()
	go func() { defer wg.Done(); local = c.readAllLocal() }()
	wg.Wait()
	if ierr != nil {
		return nil, ierr
	}
	if perr != nil {
		return nil, perr
	}
	havePack := map[string]bool{}
	for _, p := range packs {
		havePack[strings.TrimPrefix(p.Name, packPrefix)] = true
	}
	remote := map[string]bool{}
	for _, o := range idxs {
		name := strings.TrimPrefix(o.Name, indexPrefix)
		id, err := parseID(name)
		if err != nil {
			r.log.Warn("remote holds an object cairn did not write", "object", o.Name)
			continue
		}
		remote[name] = true
		if !havePack[name] {
			r.log.Warn("pack index without its pack (deleted behind cairn's back?); its blocks will be uploaded again", "pack", name)
			continue
		}
		pi := local[name]
		if pi == nil {
			data, gerr := r.st.get(ctx, o.Name, "", 0, 0)
			if gerr != nil {
				return nil, gerr
			}
			if pi, err = r.openIndex(id, data); err != nil {
				r.log.Warn("pack index fails authentication; its blocks will be uploaded again", "pack", name, "err", err)
				continue
			}
			if err := c.writeLocal(pi); err != nil {
				return nil, err
			}
		}
		c.add(pi)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !remote[e.Name()] {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return c, nil
}

// readAllLocal reads every cached pack index, by pack name; unreadable
// ones are left out (fetched again).
func (c *blockCache) readAllLocal() map[string]*packIndex {
	out := map[string]*packIndex{}
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return out
	}
	for _, e := range ents {
		id, err := parseID(e.Name())
		if err != nil {
			continue
		}
		if pi, err := c.readLocal(id); err == nil {
			out[e.Name()] = pi
		}
	}
	return out
}

func (c *blockCache) readLocal(id ID) (*packIndex, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, id.String()))
	if err != nil {
		return nil, err
	}
	pi, err := decodePackIndex(data)
	if err != nil {
		return nil, err
	}
	if pi.Pack != id {
		return nil, errors.New("cached index names another pack")
	}
	return pi, nil
}

func (c *blockCache) writeLocal(pi *packIndex) error {
	path := filepath.Join(c.dir, pi.Pack.String())
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pi.encode(), 0o600); err != nil {
		return fmt.Errorf("block cache: %w", err)
	}
	return os.Rename(tmp, path)
}

func (c *blockCache) add(pi *packIndex) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.packs[pi.Pack] = pi.Version
	for _, e := range pi.Entries {
		if _, ok := c.blobs[e.ID]; !ok {
			c.blobs[e.ID] = blobRef{Pack: pi.Pack, Off: e.Off, Len: e.Len, Raw: e.Raw}
		}
	}
}

func (c *blockCache) lookup(id ID) (blobRef, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.blobs[id]
	return b, ok
}

func (c *blockCache) version(pack ID) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.packs[pack]
	return v, ok
}
