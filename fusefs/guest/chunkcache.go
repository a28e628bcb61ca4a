package guest

import (
	"container/list"
	"io"
	"sync"
)

// A filesystem reader asks for its metadata in small pieces: an inode of
// 256 bytes, a directory block of 4 KiB, an NTFS record of 1 KiB read a
// few fields at a time, a 3 KiB file. Every such read of the disk costs a
// reader borrowed from the mount's cache, a liveness check of the point
// and a pread of the delta images. chunkCache answers small reads from the
// 64 KiB chunks around them that earlier reads fetched, which also reads
// ahead for the neighbouring inodes and the small files that mkfs and
// copies place side by side. The bytes of a committed point never change,
// so a cached chunk stays true; a read that fails is not cached.

const (
	chunkSize = 64 << 10
	// chunkCacheBytes bounds one volume's cache.
	chunkCacheBytes = 16 << 20
)

type chunkCache struct {
	r    io.ReaderAt
	size int64 // bytes readable through r (the volume's or disk's size)

	mu     sync.Mutex
	lru    *list.List // of *chunk, front = newest
	chunks map[int64]*list.Element
	bytes  int64 // held by the chunks
}

type chunk struct {
	off  int64
	data []byte
}

// newChunkCache caches small reads of r, whose readable size is size.
func newChunkCache(r io.ReaderAt, size int64) *chunkCache {
	return &chunkCache{r: r, size: size, lru: list.New(), chunks: map[int64]*list.Element{}}
}

// ReadAt reads len(p) bytes at off: large reads go straight to the
// underlying reader, small ones through the cached chunks.
func (c *chunkCache) ReadAt(p []byte, off int64) (int, error) {
	if len(p) >= chunkSize || off < 0 || off >= c.size {
		return c.r.ReadAt(p, off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= c.size {
			return n, io.EOF
		}
		data, err := c.get(pos &^ (chunkSize - 1))
		if err != nil {
			// The caller gets the underlying reader's own answer.
			m, err := c.r.ReadAt(p[n:], pos)
			return n + m, err
		}
		n += copy(p[n:], data[pos&(chunkSize-1):])
	}
	return n, nil
}

func (c *chunkCache) get(off int64) ([]byte, error) {
	c.mu.Lock()
	if el, ok := c.chunks[off]; ok {
		c.lru.MoveToFront(el)
		data := el.Value.(*chunk).data
		c.mu.Unlock()
		return data, nil
	}
	c.mu.Unlock()
	data := make([]byte, min(chunkSize, c.size-off))
	if _, err := c.r.ReadAt(data, off); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.chunks[off]; ok { // another reader fetched it meanwhile
		return el.Value.(*chunk).data, nil
	}
	c.chunks[off] = c.lru.PushFront(&chunk{off: off, data: data})
	c.bytes += int64(len(data))
	for c.lru.Len() > chunkCacheBytes/chunkSize {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.chunks, old.Value.(*chunk).off)
		c.bytes -= int64(len(old.Value.(*chunk).data))
	}
	return data, nil
}

// held is what the cache holds, in bytes.
func (c *chunkCache) held() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
