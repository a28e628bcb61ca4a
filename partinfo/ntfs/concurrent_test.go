package ntfs_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
	"github.com/cairnbackup/cairn/partinfo/ntfs"
)

// TestNTFSConcurrentReaders reads many files from several goroutines at
// once through one FS (run with -race to check the locking).
func TestNTFSConcurrentReaders(t *testing.T) {
	testutil.RequireTools(t, "mkntfs", "ntfscp")
	dir := t.TempDir()
	img := filepath.Join(dir, "n.img")
	fixture.Image(t, img, 16<<20)
	fixture.Run(t, nil, "mkntfs", "-F", "-Q", "-q", img)
	want := map[string][]byte{}
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("file-%02d.bin", i)
		data := bytes.Repeat([]byte{byte('a' + i)}, 700*(i*i+1))
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fixture.Run(t, nil, "ntfscp", img, src, name)
		want[name] = data
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := ntfs.Open(f, 0, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	fsys := partinfo.AsFS(v)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 5; round++ {
				for name, data := range want {
					got, err := fs.ReadFile(fsys, name)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, data) {
						errs <- fmt.Errorf("%s differs", name)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
