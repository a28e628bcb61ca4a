package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// ext4Size is the size of the ext4 partition of a data disk.
const ext4Size = 32 << 20

// haveMkfsExt4 reports whether mkfs.ext4 is installed: the data disks get
// an ext4 partition only then (go-diskfs's ext4 writer is not trusted).
func haveMkfsExt4() bool {
	_, err := exec.LookPath("mkfs.ext4")
	return err == nil
}

// writeExt4 makes an ext4 filesystem holding files with `mkfs.ext4 -d`
// and copies it into the image's second partition.
func (img *image) writeExt4(ctx context.Context, tmpDir, label string, files map[string][]byte) error {
	if img.extraSize == 0 {
		return errors.New("image has no room for an ext4 partition")
	}
	src, err := os.MkdirTemp(tmpDir, "ext4-src-")
	if err != nil {
		return fmt.Errorf("ext4 source dir: %w", err)
	}
	defer os.RemoveAll(src)
	for p, data := range files {
		full := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("ext4 source: %w", err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			return fmt.Errorf("ext4 source: %w", err)
		}
	}
	fsImg := src + ".ext4"
	defer os.Remove(fsImg)
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", label, "-E", "root_owner=0:0", "-d", src, fsImg,
		fmt.Sprintf("%dk", img.extraSize>>10))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, bytes.TrimSpace(out))
	}
	return copyInto(img.path, img.extraOff, fsImg, img.extraSize)
}

// copyInto copies the non-zero 64 KiB blocks of the file src (at most
// size bytes) into dst at off, keeping dst sparse.
func copyInto(dst string, off int64, src string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer out.Close()
	buf := make([]byte, 64<<10)
	zero := make([]byte, len(buf))
	for pos := int64(0); pos < size; pos += int64(len(buf)) {
		n, err := in.ReadAt(buf, pos)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", src, err)
		}
		if n == 0 {
			break
		}
		if bytes.Equal(buf[:n], zero[:n]) {
			continue
		}
		if _, err := out.WriteAt(buf[:n], off+pos); err != nil {
			return fmt.Errorf("write %s: %w", dst, err)
		}
	}
	return out.Sync()
}
