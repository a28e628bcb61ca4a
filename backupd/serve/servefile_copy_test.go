package serve

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestServeFileOfACopy: a repository copied while cairn serve runs on it
// carries serve.json along; on the copy no server runs (cairn serve there
// used to be refused as a second server, and cairn status showed the
// original's jobs), while on the original the record still counts, also
// after the repository was renamed (moved) on its filesystem.
func TestServeFileOfACopy(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "repo")
	if err := os.Mkdir(orig, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeServeFile(orig, ServeFile{PID: os.Getpid(), Listen: "127.0.0.1:1", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy")
	if out, err := exec.Command("cp", "-a", orig, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	if _, err := ReadServeFile(cp); !errors.Is(err, ErrNotServing) {
		t.Fatalf("serve.json of a copy: %v, want ErrNotServing", err)
	}
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(orig, moved); err != nil {
		t.Fatal(err)
	}
	if f, err := ReadServeFile(moved); err != nil || f.PID != os.Getpid() {
		t.Fatalf("serve.json of the running server's repository: %v, %v", f, err)
	}
}
