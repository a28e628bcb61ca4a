package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/fusefs"
	"github.com/cairnbackup/cairn/internal/ldmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestWindowsDynamicDisks is a Windows VM of two MBR dynamic disks (LDM
// database written by internal/ldmfixture, which ldmtool reads back in
// partinfo/ldm's tests): an NTFS volume spanned over both disks, an NTFS
// volume striped over both and a mirrored one. Imported and mounted,
// fs/ldm/<volume>/ shows each NTFS with every file equal to its source;
// a point with only the first disk shows the mirror and explains the
// rest.
func TestWindowsDynamicDisks(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "mkntfs", "ntfs-3g")
	dir := t.TempDir()
	vols := []ldmfixture.Volume{
		{Name: "Data", Size: 96 * mib, Comps: []ldmfixture.Component{{Parts: []ldmfixture.Part{
			{Disk: 0, Start: 0, Size: 64 * mib}, {Disk: 1, Start: 0, Size: 32 * mib, VolOffset: 64 * mib}}}}},
		{Name: "Stripe", Size: 64 * mib, Comps: []ldmfixture.Component{{Striped: true, Stripe: 64 << 10, Parts: []ldmfixture.Part{
			{Disk: 0, Start: 64 * mib, Size: 32 * mib, Index: 0}, {Disk: 1, Start: 32 * mib, Size: 32 * mib, Index: 1}}}}},
		{Name: "Mirror", Size: 32 * mib, Comps: []ldmfixture.Component{
			{Parts: []ldmfixture.Part{{Disk: 0, Start: 96 * mib, Size: 32 * mib}}},
			{Parts: []ldmfixture.Part{{Disk: 1, Start: 64 * mib, Size: 32 * mib}}}}},
	}
	disks, srcs := buildLDMDisks(t, dir, []int64{140 * mib, 110 * mib}, vols, 50)
	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	full := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "win", "--disk", "disk0", "--disk", "disk1", disks[0], disks[1]))
	half := strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "halfwin", "--disk", "disk0", disks[0]))
	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	ldmOf := func(vm, point string, p ...string) string {
		return filepath.Join(append([]string{mnt, vm, point, "fs", "ldm"}, p...)...)
	}
	if got := listNames(t, ldmOf("win", full)); got != "Data,Mirror,Stripe" {
		t.Fatalf("fs/ldm lists %s", got)
	}
	for _, v := range vols {
		t.Run(v.Name, func(t *testing.T) {
			compareTrees(t, walkTree(t, srcs[v.Name], nil), walkTree(t, ldmOf("win", full, v.Name), ntfsMetadata), compareOpts{mtimeGran: time.Microsecond})
		})
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "win", full, "fs", "disk0", fusefs.ErrorFileName)); err != nil || !strings.Contains(string(b), "fs/ldm/") {
		t.Errorf("fs/disk0/ERROR.txt: %q %v", b, err)
	}
	t.Run("missing disk", func(t *testing.T) {
		compareTrees(t, walkTree(t, srcs["Mirror"], nil), walkTree(t, ldmOf("halfwin", half, "Mirror"), ntfsMetadata), compareOpts{mtimeGran: time.Microsecond})
		for _, name := range []string{"Data", "Stripe"} {
			b, err := os.ReadFile(ldmOf("halfwin", half, name, fusefs.ErrorFileName))
			if err != nil || !strings.Contains(string(b), "Disk2") {
				t.Errorf("%s/ERROR.txt: %q %v", name, b, err)
			}
		}
		if b, err := os.ReadFile(ldmOf("halfwin", half, fusefs.ErrorFileName)); err != nil || !strings.Contains(string(b), "not among the disks") {
			t.Errorf("fs/ldm/ERROR.txt: %q %v", b, err)
		}
	})
	t.Run("cli", func(t *testing.T) {
		tables, _ := cairnPartitions(t, repoDir, "win", full)
		var got []string
		for _, tb := range tables {
			if strings.HasPrefix(tb.Disk, "ldm/") {
				p := tb.Partitions[0]
				got = append(got, fmt.Sprintf("%s=%s:%s:%v:%s", tb.Disk, p.Type, p.Filesystem, p.Browsable, strings.Join(tb.MadeOf, "+")))
			} else {
				// A dynamic disk says which volumes it holds.
				p := tb.Partitions[0]
				got = append(got, fmt.Sprintf("%s/%s=%s:%s", tb.Disk, p.Name, p.Filesystem, strings.Join(p.LDM, "+")))
			}
		}
		if w := "disk0/p1=ldm:ldm/Data+ldm/Mirror+ldm/Stripe disk1/p1=ldm:ldm/Data+ldm/Mirror+ldm/Stripe " +
			"ldm/Data=spanned:ntfs:true:disk0+disk1 ldm/Mirror=mirrored:ntfs:true:disk0+disk1 ldm/Stripe=striped:ntfs:true:disk0+disk1"; strings.Join(got, " ") != w {
			t.Errorf("partitions: %v, want %s", got, w)
		}
		ls := mustCairn(t, "--repo", repoDir, "files", "--vm", "win", "--volume", "ldm/Stripe", "/")
		if !strings.Contains(ls, "names") {
			t.Errorf("files --volume ldm/Stripe:\n%s", ls)
		}
	})
}
