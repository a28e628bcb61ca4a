package lab

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/fsopen"
)

// readTree opens partition part of the raw image at path with cairn's own
// readers and returns every regular file's sha256 by guest path.
func readTree(t *testing.T, path string, part int) (*partinfo.Table, map[string]FileState) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	table, err := partinfo.ReadTable(f, st.Size())
	if err != nil {
		t.Fatalf("ReadTable: %v", err)
	}
	var p *partinfo.Partition
	for i := range table.Partitions {
		if table.Partitions[i].Number == part {
			p = &table.Partitions[i]
		}
	}
	if p == nil {
		t.Fatalf("no partition %d in %+v", part, table)
	}
	fsys, det, err := fsopen.OpenPartition(f, *p)
	if err != nil {
		t.Fatalf("open partition %d (%+v): %v", part, det, err)
	}
	tree := partinfo.AsFS(fsys)
	out := make(map[string]FileState)
	err = fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		r, err := tree.Open(p)
		if err != nil {
			return err
		}
		defer r.Close()
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		out["/"+p] = FileState{SHA256: sha256Hex(data), Size: int64(len(data))}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return table, out
}

func treeState(files map[string][]byte) map[string]FileState {
	out := make(map[string]FileState, len(files))
	for p, b := range files {
		out[p] = FileState{SHA256: sha256Hex(b), Size: int64(len(b))}
	}
	return out
}

func compareStates(t *testing.T, got, want map[string]FileState) {
	t.Helper()
	for p, w := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s missing", p)
		} else if g != w {
			t.Errorf("%s: got %+v, want %+v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected file", p)
		}
	}
}

func TestCreateImageGPT(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	files := osTree("lab-vm-1", 1)
	if len(files) < 200 {
		t.Fatalf("tree has only %d files", len(files))
	}
	img, err := createImage(path, 128<<20, tableGPT, "system", files, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.close(); err != nil {
		t.Fatal(err)
	}
	table, got := readTree(t, path, 1)
	if table.Type != partinfo.TableGPT || len(table.Partitions) != 1 || len(table.Warnings) != 0 {
		t.Fatalf("table: %+v", table)
	}
	if p := table.Partitions[0]; p.Start != partStart*sectorSize || p.Name != "system" {
		t.Errorf("partition: %+v", p)
	}
	compareStates(t, got, treeState(files))
}

func TestCreateImageMBR(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	files := dataTree("lab-vm-2", 2)
	img, err := createImage(path, 64<<20, tableMBR, "data", files, 0)
	if err != nil {
		t.Fatal(err)
	}
	img.close()
	table, got := readTree(t, path, 1)
	if table.Type != partinfo.TableMBR || len(table.Partitions) != 1 {
		t.Fatalf("table: %+v", table)
	}
	compareStates(t, got, treeState(files))
}

func TestCreateImageRejectsBadSize(t *testing.T) {
	for _, size := range []int64{0, 1 << 20, 100<<20 + 1} {
		if _, err := createImage(filepath.Join(t.TempDir(), "d.img"), size, tableGPT, "x", nil, 0); err == nil {
			t.Errorf("size %d accepted", size)
		}
	}
}

// TestRemoveFreesClusters writes and deletes far more data than the volume
// holds: go-diskfs alone never frees a deleted file's clusters.
func TestRemoveFreesClusters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.img")
	img, err := createImage(path, 64<<20, tableGPT, "system", map[string][]byte{"/keep.txt": []byte("keep\n")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer img.close()
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for i := 0; i < 20; i++ { // 160 MiB through a 62 MiB volume
		big[0] = byte(i)
		if err := img.writeFile("/tmp/big.bin", big); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if err := img.removeFile("/tmp/big.bin"); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if err := img.writeFile("/tmp/last.bin", big); err != nil {
		t.Fatal(err)
	}
	if err := img.check(map[string][]byte{"/keep.txt": []byte("keep\n"), "/tmp/last.bin": big}, []string{"/tmp/big.bin"}); err != nil {
		t.Fatal(err)
	}
}
