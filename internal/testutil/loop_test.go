package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAttachLoopSurvivesStrayDetach: a `losetup -d` of a pinned loop
// device's name by another process (a test detaching a name twice) does
// not take the device away: it still reads its file until Detach, which
// frees it; an unpinned device of the same kind is gone at once (the way
// an LVM fixture lost its PV mid-build).
func TestAttachLoopSurvivesStrayDetach(t *testing.T) {
	RequireRoot(t)
	RequireTools(t, "losetup")
	img := filepath.Join(t.TempDir(), "img")
	want := bytes.Repeat([]byte("pinned loop\n"), 1<<16)
	if err := os.WriteFile(img, want, 0o644); err != nil {
		t.Fatal(err)
	}
	backs := func(dev string) bool {
		out, _ := exec.Command("losetup", "--noheadings", "-O", "BACK-FILE", "--list", dev).CombinedOutput()
		return strings.TrimSpace(string(out)) == img
	}

	// Unpinned: the stray detach takes it.
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		Missing(t, "a loop device: "+string(out))
	}
	plain := strings.TrimSpace(string(out))
	exec.Command("losetup", "-d", plain).Run()
	if backs(plain) {
		t.Fatalf("%s still backs %s after losetup -d (the kernel keeps open devices now?)", plain, img)
	}

	l := AttachLoop(t, img, LoopOptions{Offset: 4096})
	if out, err := exec.Command("losetup", "-d", l.Dev).CombinedOutput(); err != nil {
		t.Fatalf("stray losetup -d %s: %v %s", l.Dev, err, out)
	}
	if err := l.Check(); err != nil || !backs(l.Dev) || !l.StrayDetached() {
		t.Fatalf("pinned %s after a stray detach: check %v, backs %v, stray %v", l.Dev, err, backs(l.Dev), l.StrayDetached())
	}
	got, err := os.ReadFile(l.Dev)
	if err != nil || !bytes.Equal(got, want[4096:]) {
		t.Fatalf("read of pinned %s after a stray detach: %d bytes, %v", l.Dev, len(got), err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	if backs(l.Dev) {
		t.Errorf("%s still backs %s after Detach", l.Dev, img)
	}
	if err := l.Detach(); err != nil {
		t.Errorf("second Detach: %v", err)
	}
}
