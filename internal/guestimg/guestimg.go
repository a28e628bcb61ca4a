// Package guestimg builds small bootable guest disks for cairn's boot
// tests from Debian packages: a Debian kernel (linux-image-*-amd64,
// fetched with apt-get download) and an initramfs whose init is
// busybox-static and prints a marker line on the serial console, on a disk
// with its own bootloader: syslinux on an MBR/FAT disk for BIOS, a
// standalone GRUB (grub-efi-amd64-bin) on a GPT EFI system partition for
// UEFI. Images are raw, cached under a directory (by default
// /var/tmp/cairn-fixtures/guests) keyed by their recipe, and made with
// mkfs.vfat and mtools: nothing is mounted.
//
// Kinds: KindBIOS and KindEFI boot to the marker; KindPanic's kernel
// panics (rdinit=/nonexistent); KindGRUBPrompt stops at the "grub>"
// prompt; KindEmpty is an empty disk (no bootable device); KindNet boots
// to the marker with an e1000 network and applications to check (an HTTP
// server and a TCP server, see net.go).
package guestimg

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Kinds of guests.
const (
	KindBIOS       = "bios"
	KindEFI        = "efi"
	KindPanic      = "panic"
	KindGRUBPrompt = "grub-prompt"
	KindEmpty      = "empty"
)

// DefaultCache is where images and the kernel are kept between runs.
const DefaultCache = "/var/tmp/cairn-fixtures/guests"

// MarkerPrefix starts the line the guest's init writes to the serial
// console (and the screen) once it runs: "CAIRN-GUEST-UP <marker>".
const MarkerPrefix = "CAIRN-GUEST-UP"

// Size of every image.
const Size = 64 << 20

// Tools lists the programs Build needs.
var Tools = []string{"apt-get", "dpkg-deb", "mkfs.vfat", "mcopy", "mmd", "syslinux", "sfdisk", "grub-mkstandalone", "busybox"}

// Spec describes one guest.
type Spec struct {
	Kind string
	// Marker is printed after MarkerPrefix by init (a different marker
	// per point proves which point booted).
	Marker string
	// Cache directory (default DefaultCache).
	Cache string
}

// Build returns the path of the raw image for spec, building it when the
// cache does not have it.
func Build(spec Spec) (string, error) {
	if spec.Cache == "" {
		spec.Cache = DefaultCache
	}
	if err := os.MkdirAll(spec.Cache, 0o755); err != nil {
		return "", err
	}
	recipe := "v4"
	if spec.Kind == KindNet {
		recipe = netRecipe
	}
	key := sha256.Sum256([]byte(fmt.Sprintf("%s|%s|%s", recipe, spec.Kind, spec.Marker)))
	path := filepath.Join(spec.Cache, fmt.Sprintf("%s-%s.img", spec.Kind, hex.EncodeToString(key[:6])))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp, err := os.MkdirTemp(spec.Cache, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	img := filepath.Join(tmp, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Truncate(img, Size); err != nil {
		return "", err
	}
	switch spec.Kind {
	case KindEmpty:
	case KindBIOS, KindPanic, KindNet:
		err = buildBIOS(spec, tmp, img)
	case KindEFI, KindGRUBPrompt:
		err = buildEFI(spec, tmp, img)
	default:
		err = fmt.Errorf("guestimg: unknown kind %q", spec.Kind)
	}
	if err != nil {
		return "", err
	}
	if err := os.Rename(img, path); err != nil {
		return "", err
	}
	return path, nil
}

func run(dir string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out.String())
	}
	return nil
}

// Kernel returns a Debian kernel image (vmlinuz), downloading the
// linux-image package once into cache.
func Kernel(cache string) (string, error) {
	if cache == "" {
		cache = DefaultCache
	}
	k := filepath.Join(cache, "vmlinuz")
	if _, err := os.Stat(k); err == nil {
		return k, nil
	}
	tmp, err := os.MkdirTemp(cache, "kernel-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	deb, err := kernelPackage(tmp)
	if err != nil {
		return "", err
	}
	if err := run(tmp, "sh", "-c", "dpkg-deb --fsys-tarfile \"$1\" | tar -x --wildcards './boot/vmlinuz-*'", "sh", deb); err != nil {
		return "", err
	}
	ks, _ := filepath.Glob(filepath.Join(tmp, "boot", "vmlinuz-*"))
	if len(ks) != 1 {
		return "", fmt.Errorf("%s has %d kernels", deb, len(ks))
	}
	if err := os.Rename(ks[0], k); err != nil {
		return "", err
	}
	return k, nil
}

// kernelPackage downloads the linux-image package behind
// linux-image-amd64 into tmp and returns its path.
func kernelPackage(tmp string) (string, error) {
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: %w", err)
	}
	pkg := ""
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
		}
	}
	if pkg == "" {
		return "", errors.New("no linux-image package behind linux-image-amd64 (apt-get update?)")
	}
	if err := run(tmp, "apt-get", "download", pkg); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s gave %d files", pkg, len(debs))
	}
	return debs[0], nil
}

// initramfs writes an uncompressed newc cpio with busybox and an init
// that prints the marker on the serial console and the screen.
func initramfs(path, marker string) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox-static: %w", err)
	}
	init := "#!/bin/busybox sh\n" +
		"/bin/busybox mkdir -p /proc /dev\n" +
		"/bin/busybox mount -t proc proc /proc\n" +
		"/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null\n" +
		"for c in /dev/ttyS0 /dev/tty0; do echo \"" + MarkerPrefix + " " + marker + "\" > $c; done\n" +
		"echo 'cairn guest login: ' > /dev/tty0\n" +
		"while :; do /bin/busybox sleep 3600; done\n"
	return writeCpio(path, bb, init, nil)
}

// cpioFile is one extra file of an initramfs.
type cpioFile struct {
	name string
	mode uint32
	data []byte
}

// writeCpio writes an uncompressed newc cpio holding busybox, init and
// the extra files (after the base entries, so the base bytes never move).
func writeCpio(path string, bb []byte, init string, extra []cpioFile) error {
	var b bytes.Buffer
	ino := 1
	add := func(name string, mode uint32, data []byte) {
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		b.WriteString(hdr)
		b.WriteString(name)
		b.WriteByte(0)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	add("bin", 0o40755, nil)
	add("dev", 0o40755, nil)
	add("proc", 0o40755, nil)
	add("bin/busybox", 0o100755, bb)
	add("bin/sh", 0o120777, []byte("busybox"))
	add("init", 0o100755, []byte(init))
	for _, f := range extra {
		add(f.name, f.mode, f.data)
	}
	add("TRAILER!!!", 0, nil)
	return os.WriteFile(path, b.Bytes(), 0o644)
}

const partStart = 2048 // sectors

// fatPartition makes a FAT16 filesystem image of the partition's size
// holding files (name in the filesystem -> local path).
func fatPartition(tmp string, files map[string]string, dirs []string) (string, error) {
	fat := filepath.Join(tmp, "fat.img")
	sizeKB := (Size - partStart*512) / 1024
	if err := run(tmp, "mkfs.vfat", "-F", "16", "-h", fmt.Sprint(partStart), "-n", "CAIRNBOOT", "-C", fat, fmt.Sprint(sizeKB)); err != nil {
		return "", err
	}
	for _, d := range dirs {
		if err := run(tmp, "mmd", "-i", fat, "::"+d); err != nil {
			return "", err
		}
	}
	for name, local := range files {
		if err := run(tmp, "mcopy", "-i", fat, local, "::"+name); err != nil {
			return "", err
		}
	}
	return fat, nil
}

// place writes the partition image into the disk at partStart.
func place(img, part string) error {
	data, err := os.ReadFile(part)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(data, partStart*512)
	return err
}

// kernelAndInitrd returns Debian's kernel (cached) and a fresh initramfs
// in tmp whose init writes spec.Marker.
func kernelAndInitrd(spec Spec, tmp string) (kernel, initrd string, err error) {
	if spec.Kind == KindNet {
		return netKernelAndInitrd(spec, tmp)
	}
	if kernel, err = Kernel(spec.Cache); err != nil {
		return "", "", err
	}
	initrd = filepath.Join(tmp, "initrd.img")
	if err := initramfs(initrd, spec.Marker); err != nil {
		return "", "", err
	}
	return kernel, initrd, nil
}

func buildBIOS(spec Spec, tmp, img string) error {
	k, rd, err := kernelAndInitrd(spec, tmp)
	if err != nil {
		return err
	}
	// no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
	// check can fail and panic the guest ("IO-APIC + timer doesn't work").
	args := "console=tty0 console=ttyS0,115200 panic=-1 loglevel=4 no_timer_check"
	if spec.Kind == KindPanic {
		args += " rdinit=/nonexistent"
	}
	cfg := filepath.Join(tmp, "syslinux.cfg")
	if err := os.WriteFile(cfg, []byte("SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND "+args+"\n"), 0o644); err != nil {
		return err
	}
	fat, err := fatPartition(tmp, map[string]string{"vmlinuz": k, "initrd.img": rd, "syslinux.cfg": cfg}, nil)
	if err != nil {
		return err
	}
	if err := run(tmp, "syslinux", "--install", fat); err != nil {
		return err
	}
	if err := run(tmp, "sh", "-c", fmt.Sprintf("echo 'start=%d, type=6, bootable' | sfdisk --no-reread --no-tell-kernel -q -X dos %s", partStart, img)); err != nil {
		return err
	}
	mbr, err := os.ReadFile("/usr/lib/syslinux/mbr/mbr.bin")
	if err != nil {
		return fmt.Errorf("syslinux-common: %w", err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(mbr[:min(len(mbr), 440)], 0)
	f.Close()
	if err != nil {
		return err
	}
	return place(img, fat)
}

func buildEFI(spec Spec, tmp, img string) error {
	grubCfg := "serial --unit=0 --speed=115200\nterminal_output serial console\nterminal_input serial console\n"
	files := map[string]string{}
	if spec.Kind == KindEFI {
		k, rd, err := kernelAndInitrd(spec, tmp)
		if err != nil {
			return err
		}
		files["vmlinuz"], files["initrd.img"] = k, rd
		grubCfg += "set timeout=0\nsearch --no-floppy --file /vmlinuz --set=root\n" +
			"linux /vmlinuz console=tty0 console=ttyS0,115200 panic=-1 loglevel=4 no_timer_check\ninitrd /initrd.img\nboot\n"
	}
	cfg := filepath.Join(tmp, "grub.cfg")
	if err := os.WriteFile(cfg, []byte(grubCfg), 0o644); err != nil {
		return err
	}
	efi := filepath.Join(tmp, "BOOTX64.EFI")
	if err := run(tmp, "grub-mkstandalone", "-O", "x86_64-efi", "-o", efi,
		"--install-modules=normal part_gpt part_msdos fat search search_fs_file linux serial terminal echo test configfile",
		"--modules=part_gpt fat serial terminal", "--locales=", "--themes=", "--fonts=",
		"boot/grub/grub.cfg="+cfg); err != nil {
		return err
	}
	files["EFI/BOOT/BOOTX64.EFI"] = efi
	fat, err := fatPartition(tmp, files, []string{"EFI", "EFI/BOOT"})
	if err != nil {
		return err
	}
	if err := run(tmp, "sh", "-c", fmt.Sprintf("echo 'start=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B' | sfdisk --no-reread --no-tell-kernel -q -X gpt %s", partStart, img)); err != nil {
		return err
	}
	return place(img, fat)
}
