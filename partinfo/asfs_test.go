package partinfo_test

import (
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairnbackup/cairn/partinfo"
)

// memFS is a tiny in-memory partinfo.Filesystem used to pin down the
// adapter's path semantics (symlinks, "..", loops) and Safe.
type memFS struct {
	nodes map[uint64]*memNode
	panic bool
}

type memNode struct {
	mode   fs.FileMode
	data   string
	target string
	kids   map[string]uint64
}

func newMemFS() *memFS {
	m := &memFS{nodes: map[uint64]*memNode{}}
	m.nodes[1] = &memNode{mode: fs.ModeDir | 0o555, kids: map[string]uint64{}}
	return m
}

func (m *memFS) add(parent uint64, name string, ino uint64, n *memNode) {
	m.nodes[ino] = n
	m.nodes[parent].kids[name] = ino
}

func (m *memFS) Info() partinfo.Info { return partinfo.Info{Type: "mem"} }
func (m *memFS) Root() uint64        { return 1 }
func (m *memFS) node(ino uint64) (*memNode, error) {
	if m.panic {
		var nilMap map[int]int
		nilMap[1] = 1 // a real runtime panic, as a parser bug would cause
	}
	n, ok := m.nodes[ino]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return n, nil
}
func (m *memFS) Stat(ino uint64) (partinfo.Attr, error) {
	n, err := m.node(ino)
	if err != nil {
		return partinfo.Attr{}, err
	}
	size := int64(len(n.data))
	if n.mode&fs.ModeSymlink != 0 {
		size = int64(len(n.target))
	}
	return partinfo.Attr{Ino: ino, Mode: n.mode, Size: size, Mtime: time.Unix(1e9, 0)}, nil
}
func (m *memFS) ReadDir(ino uint64) ([]partinfo.DirEntry, error) {
	n, err := m.node(ino)
	if err != nil {
		return nil, err
	}
	var out []partinfo.DirEntry
	for name, k := range n.kids {
		out = append(out, partinfo.DirEntry{Name: name, Ino: k, Type: m.nodes[k].mode.Type()})
	}
	return out, nil
}
func (m *memFS) Lookup(dir uint64, name string) (uint64, error) {
	n, err := m.node(dir)
	if err != nil {
		return 0, err
	}
	if k, ok := n.kids[name]; ok {
		return k, nil
	}
	return 0, fs.ErrNotExist
}
func (m *memFS) Readlink(ino uint64) (string, error) {
	n, err := m.node(ino)
	if err != nil {
		return "", err
	}
	return n.target, nil
}
func (m *memFS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	n, err := m.node(ino)
	if err != nil {
		return 0, err
	}
	return strings.NewReader(n.data).ReadAt(p, off)
}
func (m *memFS) SeekData(ino uint64, off int64) (int64, error) { return off, nil }
func (m *memFS) SeekHole(ino uint64, off int64) (int64, error) {
	n, err := m.node(ino)
	return int64(len(n.data)), err
}

func sampleFS() *memFS {
	m := newMemFS()
	m.add(1, "etc", 2, &memNode{mode: fs.ModeDir | 0o555, kids: map[string]uint64{}})
	m.add(2, "hosts", 3, &memNode{mode: 0o444, data: "127.0.0.1 localhost\n"})
	m.add(1, "rel", 4, &memNode{mode: fs.ModeSymlink | 0o777, target: "etc/hosts"})
	m.add(2, "abs", 5, &memNode{mode: fs.ModeSymlink | 0o777, target: "/etc/../etc/hosts"})
	m.add(1, "etclink", 6, &memNode{mode: fs.ModeSymlink | 0o777, target: "./etc"})
	m.add(1, "loop", 7, &memNode{mode: fs.ModeSymlink | 0o777, target: "loop"})
	m.add(2, "up", 8, &memNode{mode: fs.ModeSymlink | 0o777, target: "../rel"})
	return m
}

func TestAsFSPaths(t *testing.T) {
	m := sampleFS()
	fsys := partinfo.AsFS(m)
	for _, p := range []string{"etc/hosts", "rel", "etc/abs", "etclink/hosts", "etc/up"} {
		b, err := fs.ReadFile(fsys, p)
		if err != nil || string(b) != "127.0.0.1 localhost\n" {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	if _, err := fs.ReadFile(fsys, "loop"); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("symlink loop: %v", err)
	}
	if _, err := fs.Stat(fsys, "etc/hosts/x"); !errors.Is(err, partinfo.ErrNotDir) {
		t.Errorf("file as directory: %v", err)
	}
	if _, err := fs.Stat(fsys, "../x"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("invalid path: %v", err)
	}
	if target, err := fs.ReadLink(fsys, "etc/abs"); err != nil || target != "/etc/../etc/hosts" {
		t.Errorf("readlink: %q %v", target, err)
	}
	if st, err := fs.Lstat(fsys, "rel"); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("lstat: %v %v", st, err)
	}
	if _, err := fs.ReadLink(fsys, "etc/hosts"); !errors.Is(err, partinfo.ErrNotSymlink) {
		t.Errorf("readlink of a file: %v", err)
	}
	f, err := fsys.Open("etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	s := f.(io.Seeker)
	s.Seek(4, io.SeekStart)
	b := make([]byte, 5)
	if n, _ := f.Read(b); string(b[:n]) != "0.0.1" {
		t.Errorf("read after seek: %q", b[:n])
	}
	f.Close()
	delete(m.nodes[1].kids, "loop") // fstest walks every link
	if err := fstest.TestFS(fsys, "etc/hosts", "rel"); err != nil {
		t.Error(err)
	}
}

func TestSafeTurnsPanicsIntoErrCorrupt(t *testing.T) {
	m := sampleFS()
	m.panic = true
	s := partinfo.Safe(m, "memfs")
	checks := map[string]error{}
	_, checks["stat"] = s.Stat(3)
	_, checks["readdir"] = s.ReadDir(1)
	_, checks["lookup"] = s.Lookup(1, "etc")
	_, checks["readlink"] = s.Readlink(4)
	_, checks["readat"] = s.ReadAt(3, make([]byte, 4), 0)
	_, checks["seekhole"] = s.SeekHole(3, 0)
	for op, err := range checks {
		if !errors.Is(err, partinfo.ErrCorrupt) || !strings.Contains(err.Error(), "memfs") {
			t.Errorf("%s: %v, want ErrCorrupt naming the filesystem", op, err)
		}
	}
	if _, err := fs.ReadFile(partinfo.AsFS(s), "etc/hosts"); !errors.Is(err, partinfo.ErrCorrupt) {
		t.Errorf("through AsFS: %v", err)
	}
}
