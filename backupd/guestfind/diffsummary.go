package guestfind

import (
	"slices"
	"strings"
)

// DiffCount is how many changes of one kind there were and the bytes
// they concern (the later size; a deleted file's earlier size).
type DiffCount struct {
	Count int   `json:"count"`
	Bytes int64 `json:"bytes"`
}

// DiffDir is the changes under one top-level directory of a filesystem.
type DiffDir struct {
	FS    string               `json:"filesystem"`
	Dir   string               `json:"dir"` // "/etc"; "/" for entries at the root
	Kinds map[string]DiffCount `json:"kinds"`
}

// DiffSummary counts a Diff's changes per kind and per top-level
// directory, and lists the files marked Encrypted.
type DiffSummary struct {
	Kinds     map[string]DiffCount `json:"kinds"`
	Dirs      []DiffDir            `json:"dirs"`
	Encrypted []string             `json:"encrypted,omitempty"` // filesystem:path
	dirAt     map[string]int
}

// NewDiffSummary is an empty summary.
func NewDiffSummary() *DiffSummary {
	return &DiffSummary{Kinds: map[string]DiffCount{}, Dirs: []DiffDir{}, dirAt: map[string]int{}}
}

// Add counts one change.
func (s *DiffSummary) Add(c Change) {
	var bytes int64
	switch {
	case c.New != nil && c.New.Type == "file":
		bytes = c.New.Size
	case c.New == nil && c.Old != nil && c.Old.Type == "file":
		bytes = c.Old.Size
	}
	inc := func(m map[string]DiffCount) {
		k := m[c.Kind]
		k.Count++
		k.Bytes += bytes
		m[c.Kind] = k
	}
	inc(s.Kinds)
	top := "/"
	if rest := strings.TrimPrefix(c.Path, "/"); strings.Contains(rest, "/") {
		top = "/" + rest[:strings.IndexByte(rest, '/')]
	} else if rest != "" && (c.New != nil && c.New.Type == "dir" || c.New == nil && c.Old != nil && c.Old.Type == "dir") {
		top = "/" + rest
	}
	key := c.FS + "\x00" + top
	i, ok := s.dirAt[key]
	if !ok {
		i = len(s.Dirs)
		s.dirAt[key] = i
		s.Dirs = append(s.Dirs, DiffDir{FS: c.FS, Dir: top, Kinds: map[string]DiffCount{}})
	}
	inc(s.Dirs[i].Kinds)
	if c.Encrypted {
		s.Encrypted = append(s.Encrypted, c.FS+":"+c.Path)
	}
}

// Sorted returns the directories by filesystem and name.
func (s *DiffSummary) Sorted() []DiffDir {
	out := slices.Clone(s.Dirs)
	slices.SortFunc(out, func(a, b DiffDir) int {
		if c := strings.Compare(a.FS, b.FS); c != 0 {
			return c
		}
		return strings.Compare(a.Dir, b.Dir)
	})
	return out
}
