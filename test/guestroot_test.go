package test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/internal/testutil"
)

// realRootDirs are the parts of this machine's own root filesystem the
// comparison copies: configuration, system binaries, headers and
// documentation — tens of thousands of real entries.
var realRootDirs = []string{"/etc", "/usr/sbin", "/usr/include", "/usr/share/doc"}

// describeEntry is everything the comparison checks of one entry.
func describeEntry(t *testing.T, p string) string {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return "lstat: " + err.Error()
	}
	d := fmt.Sprintf("mode=%o uid=%d gid=%d nlink=%d size=%d atime=%d.%d mtime=%d.%d ctime=%d.%d rdev=%d",
		st.Mode, st.Uid, st.Gid, st.Nlink, st.Size, st.Atim.Sec, st.Atim.Nsec, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Rdev)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		f, err := os.Open(p)
		if err != nil {
			return d + " open: " + err.Error()
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		d += fmt.Sprintf(" sha=%x %v", h.Sum(nil), err)
	case syscall.S_IFLNK:
		l, err := os.Readlink(p)
		d += fmt.Sprintf(" -> %q %v", l, err)
	}
	buf := make([]byte, 1<<16)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return d + " listxattr: " + err.Error()
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	slices.Sort(names)
	for _, name := range names {
		if name == "" {
			continue
		}
		v := make([]byte, 1<<16)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			d += fmt.Sprintf(" %s:%v", name, err)
			continue
		}
		d += fmt.Sprintf(" %s=%x", name, v[:m])
	}
	return d
}

func describeTree(t *testing.T, root string) map[string]string {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = describeEntry(t, p)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// TestRealRootTree copies real system directories (hard links, so
// nothing is duplicated) plus device nodes, a FIFO, a file capability and
// ACLs into ext4 (mkfs.ext4 -d) and XFS (cp -a through a kernel mount),
// imports both and checks that every entry's type, mode, owner, link
// count, size, times, content, link target, device number and extended
// attributes through the FUSE mount equal what a kernel mount shows.
func TestRealRootTree(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkfs.xfs", "setcap", "setfacl")
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	buildRealRootStage(t, stage)

	imgs := map[string]string{"ext4": filepath.Join(dir, "ext4.img"), "xfs": filepath.Join(dir, "xfs.img")}
	sh(t, "mkfs.ext4", "-q", "-F", "-d", stage, imgs["ext4"], "1500M")
	makeImage(t, imgs["xfs"], 1500*mib)
	sh(t, "mkfs.xfs", "-q", "-f", imgs["xfs"])
	m := filepath.Join(dir, "fill")
	os.Mkdir(m, 0o755)
	sh(t, "mount", "-o", "loop", imgs["xfs"], m)
	sh(t, "cp", "-a", stage+"/.", m+"/")
	sh(t, "umount", m)

	repoDir := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repoDir, "init")
	points := map[string]string{}
	for name, img := range imgs {
		points[name] = strings.TrimSpace(mustCairn(t, "--repo", repoDir, "import", "--vm", "root-"+name, "--disk", "sda", img))
	}
	mnt := filepath.Join(dir, "mnt")
	mountVolumes(t, repoDir, mnt)
	for _, name := range []string{"ext4", "xfs"} {
		t.Run(name, func(t *testing.T) {
			km := filepath.Join(dir, "kernel-"+name)
			os.Mkdir(km, 0o755)
			sh(t, "mount", "-o", "loop,ro", imgs[name], km)
			defer exec.Command("umount", km).Run()
			want := describeTree(t, km)
			got := describeTree(t, filepath.Join(mnt, "root-"+name, points[name], "fs", "sda", "whole"))
			var diffs []string
			for p, w := range want {
				if g, ok := got[p]; !ok {
					diffs = append(diffs, p+": missing through the mount")
				} else if g != w {
					diffs = append(diffs, fmt.Sprintf("%s:\n  mount:  %.300s\n  kernel: %.300s", p, g, w))
				}
			}
			for p := range got {
				if _, ok := want[p]; !ok {
					diffs = append(diffs, p+": only through the mount")
				}
			}
			slices.Sort(diffs)
			if len(diffs) > 0 {
				t.Errorf("%d of %d entries differ:\n%s", len(diffs), len(want), strings.Join(diffs[:min(len(diffs), 8)], "\n"))
			}
			if len(want) < 5000 {
				t.Errorf("only %d entries: the real tree is missing", len(want))
			}
			t.Logf("%s: %d entries compared with a kernel mount", name, len(want))
		})
	}
}

// buildRealRootStage fills stage with a copy of realRootDirs (hard links
// when on the same filesystem), device nodes, a FIFO, a file with a
// capability and a directory with default ACLs: a real root tree for
// mkfs.ext4 -d or a copy into a kernel mount.
func buildRealRootStage(t testing.TB, stage string) {
	t.Helper()
	os.Mkdir(stage, 0o755)
	for _, d := range realRootDirs {
		if _, err := os.Stat(d); err != nil {
			continue
		}
		dst := filepath.Join(stage, strings.TrimPrefix(d, "/"))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		// Hard links when the stage is on the same filesystem, else copies.
		if exec.Command("cp", "-al", d, dst).Run() != nil {
			sh(t, "cp", "-a", d, dst)
		}
	}
	os.MkdirAll(filepath.Join(stage, "dev"), 0o755)
	for _, n := range []struct {
		name string
		mode uint32
		dev  int
	}{{"null", syscall.S_IFCHR | 0o666, int(unix.Mkdev(1, 3))}, {"sda", syscall.S_IFBLK | 0o660, int(unix.Mkdev(8, 0))},
		{"big", syscall.S_IFCHR | 0o600, int(unix.Mkdev(259, 70000))}, {"fifo", syscall.S_IFIFO | 0o644, 0}} {
		if err := syscall.Mknod(filepath.Join(stage, "dev", n.name), n.mode, n.dev); err != nil {
			t.Fatal(err)
		}
	}
	ping := filepath.Join(stage, "ping")
	os.WriteFile(ping, []byte("#!/bin/sh\n"), 0o755)
	sh(t, "setcap", "cap_net_raw+ep", ping)
	os.Mkdir(filepath.Join(stage, "shared"), 0o2775)
	sh(t, "setfacl", "-m", "g:100:rwx", "-d", "-m", "g:100:rwx", filepath.Join(stage, "shared"))
}
