package guestfind

import (
	"container/heap"
	"context"
	"io/fs"
	"strings"

	"github.com/cairnbackup/cairn/partinfo"
)

// DirQuery asks for one page of a directory listing in name order (byte
// order, as ReadDir sorts).
type DirQuery struct {
	// After is the cursor: only names sorting after it ("" from the
	// start). It is the last name of the previous page.
	After string
	// Limit is the most entries of the page (at least 1).
	Limit int
	// Filter keeps only names holding it, case-insensitively ("" keeps
	// every name).
	Filter string
}

// DirPage is one page of a directory listing.
type DirPage struct {
	Entries []DirEntry
	// Total is the number of entries of the directory; Matched those
	// Filter keeps (Total without a filter).
	Total, Matched int
	// Offset is the number of matching entries before the page.
	Offset int
	// More: matching entries follow the page (ask again with After set
	// to the page's last name).
	More bool
}

// ReadDirPage lists one page of the directory whose inode is ino: the
// first q.Limit names after q.After that q.Filter keeps, with their
// attributes as ReadDir gives them. Only the page's entries are stat'ed
// and only they are held beside the reader's list of names, so a page
// of a directory of 500,000 entries costs a pass over the names and
// q.Limit stats, not 500,000.
func ReadDirPage(ctx context.Context, fsys partinfo.Filesystem, typ string, ino uint64, q DirQuery) (DirPage, error) {
	if q.Limit < 1 {
		q.Limit = 1
	}
	ents, err := fsys.ReadDir(ino)
	if err != nil {
		return DirPage{}, err
	}
	filter := strings.ToLower(q.Filter)
	out := DirPage{Total: len(ents)}
	// The page is the q.Limit smallest matching names after the cursor:
	// a max-heap of at most q.Limit of them keeps memory to the page.
	h := &nameHeap{}
	after := 0
	for i := range ents {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return DirPage{}, err
			}
		}
		name := ents[i].Name
		if filter != "" && !strings.Contains(strings.ToLower(name), filter) {
			continue
		}
		out.Matched++
		if name <= q.After && q.After != "" {
			out.Offset++
			continue
		}
		after++
		if h.Len() < q.Limit {
			heap.Push(h, &ents[i])
		} else if name < (*h)[0].Name {
			(*h)[0] = &ents[i]
			heap.Fix(h, 0)
		}
	}
	out.More = after > h.Len()
	page := make([]*partinfo.DirEntry, h.Len())
	for i := len(page) - 1; i >= 0; i-- {
		page[i] = heap.Pop(h).(*partinfo.DirEntry)
	}
	owners := hasOwners(typ)
	out.Entries = make([]DirEntry, 0, len(page))
	for _, de := range page {
		out.Entries = append(out.Entries, statEntry(fsys, de, owners))
	}
	return out, nil
}

// statEntry is de with its attributes (symlinks not followed, their
// targets read); an entry whose inode cannot be read has its error.
func statEntry(fsys partinfo.Filesystem, de *partinfo.DirEntry, owners bool) DirEntry {
	a, err := fsys.Stat(de.Ino)
	if err != nil {
		return DirEntry{Name: de.Name, Entry: Entry{Mode: de.Type, Ino: de.Ino}, Err: err}
	}
	e := entryOf(a, owners)
	if a.Mode&fs.ModeSymlink != 0 {
		e.Target, _ = fsys.Readlink(a.Ino)
	}
	return DirEntry{Name: de.Name, Entry: e}
}

// nameHeap is a max-heap of directory entries by name.
type nameHeap []*partinfo.DirEntry

func (h nameHeap) Len() int           { return len(h) }
func (h nameHeap) Less(i, j int) bool { return h[i].Name > h[j].Name }
func (h nameHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nameHeap) Push(x any)        { *h = append(*h, x.(*partinfo.DirEntry)) }
func (h *nameHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
