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
	idxs, err := r.st.list(ctx, indexPrefix, false)
	if err != nil {
		return nil, err
	}
	packs, err := r.st.list(ctx, packPrefix, false)
	if err != nil {
		return nil, err
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
		pi, err := c.readLocal(id)
		if err != nil {
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
