package volumes_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/internal/mdfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
	"github.com/cairnbackup/cairn/partinfo"
	"github.com/cairnbackup/cairn/partinfo/internal/fixture"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

// TestScanBtrfsOnArrays: a btrfs of two devices, each an MD raid1 of two
// whole disks with 1.0 superblocks (data at offset 0, so every member
// shows the btrfs superblock too), made by mkfs.btrfs and filled through
// a kernel mount. Scan names the arrays as its devices, not the member
// disks, and the filesystem reads back what the kernel wrote.
func TestScanBtrfsOnArrays(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.btrfs", "losetup", "mount", "umount")
	dir := t.TempDir()
	var arrays []mdfixture.Spec
	var loops []string
	var pinned []*testutil.Loop
	for _, name := range []string{"a", "b"} {
		s := mdfixture.Spec{Version: "1.0", Level: mdfixture.Level1, Members: 2, MemberLen: 130 * mib, Name: name}
		img := filepath.Join(dir, name+".array")
		fixture.Image(t, img, s.ArraySize())
		// Detached once, through its pin: detaching the name again at
		// the end took away loop devices other packages had been given.
		l := testutil.AttachLoop(t, img, testutil.LoopOptions{})
		arrays, loops, pinned = append(arrays, s), append(loops, l.Dev), append(pinned, l)
	}
	fixture.Run(t, nil, "mkfs.btrfs", "-q", "-f", "-L", "onmd", "-d", "raid0", "-m", "raid1", loops[0], loops[1])
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	fixture.Run(t, nil, "mount", "-o", "device="+loops[1], loops[0], mnt)
	want := bytes.Repeat([]byte("over two arrays\n"), 1<<16) // 1 MiB: 16 stripes of 64 KiB
	werr := os.WriteFile(filepath.Join(mnt, "file.txt"), want, 0o644)
	fixture.Run(t, nil, "umount", mnt)
	if werr != nil {
		t.Fatal(werr)
	}
	var disks []volumes.Disk
	for i, s := range arrays {
		if err := pinned[i].Detach(); err != nil {
			t.Fatal(err)
		}
		for j, m := range s.BuildRaid1(t, t.TempDir(), filepath.Join(dir, s.Name+".array")) {
			f := open(t, m)
			disks = append(disks, volumes.Disk{Name: s.Name + string(rune('0'+j)), R: f, Size: size(t, f)})
		}
	}
	st, err := volumes.Scan(context.Background(), disks)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Btrfs) != 1 {
		t.Fatalf("%d btrfs groups, want 1", len(st.Btrfs))
	}
	g := st.Btrfs[0]
	var names []string
	for _, m := range g.Members {
		names = append(names, m.Region.Name)
	}
	if strings.Join(names, ",") != "md/a,md/b" || g.Label != "onmd" || g.Missing() != 0 {
		t.Fatalf("btrfs %q devices %v (%d missing), want onmd on md/a,md/b", g.Label, names, g.Missing())
	}
	fsys, err := g.Open()
	if err != nil {
		t.Fatal(err)
	}
	got, err := fs.ReadFile(partinfo.AsFS(partinfo.Safe(fsys, "btrfs")), "file.txt")
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("file.txt: %d bytes, %v; want the %d written", len(got), err, len(want))
	}
}
