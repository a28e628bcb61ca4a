package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/backupd/boot"
	"github.com/cairnbackup/cairn/backupd/source"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/fusefs"
)

var cliCommand = regexp.MustCompile("`|cairn (init|points|umount)")

// The library errors carry no CLI advice; the CLI adds it, naming the
// command to run.
func TestAdviceForLibraryErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	open := func(d string) error {
		r, err := blockmap.Open(ctx, d, blockmap.Options{})
		if err == nil {
			r.Close()
		}
		return err
	}
	_, noPoints := blockmap.FindPoint(nil, "vm1", "latest")
	_, noPoint := blockmap.FindPoint([]blockmap.Point{{VM: "vm1", ID: "a", Gen: 1}}, "vm1", "b")
	host, _ := os.Hostname()
	lockRepo := filepath.Join(dir, "repo")
	if err := blockmap.Init(ctx, lockRepo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, lockRepo, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	held, err := repo.LockVM(ctx, "vm1", "cairn import")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	_, locked := repo.LockVM(ctx, "vm1", "cairn prune")
	for _, tc := range []struct {
		name        string
		err         error
		text, logic string // in the error; in the advice
	}{
		{"no repository", open(""), "no repository given", "--repo DIR or set CAIRN_REPO"},
		{"missing repository", open(missing), "does not exist", "`cairn --repo " + missing + " init`"},
		{"no cairn.json", open(empty), "cairn.json is missing", "`cairn --repo " + empty + " init`"},
		{"no points", fmt.Errorf("export: %w", noPoints), "no recovery points", "`cairn points`"},
		{"unknown point", noPoint, `has no recovery point "b"`, "`cairn points --vm vm1`"},
		{"stale mount", &fusefs.MountedError{Dir: "/m", Stale: true}, "server has died", "`cairn umount --lazy /m`"},
		{"VM locked", fmt.Errorf("import: %w", locked), fmt.Sprintf("in use by pid %d (cairn import) on host %s since", os.Getpid(), host), fmt.Sprintf("`kill %d`", os.Getpid())},
		{"VM locked elsewhere", &blockmap.VMLockedError{VM: "vm1", Holder: blockmap.VMLockHolder{PID: 7, Host: "other-" + host}}, "in use by pid 7 on host other-", "stop pid 7 on host other-" + host},
		{"VM locked by whom?", &blockmap.VMLockedError{VM: "vm1"}, "in use by another process", "wait for it to end"},
		{"mounted", &fusefs.MountedError{Dir: "/m", FSType: "ext4", Source: "/dev/x"}, "(ext4 from /dev/x)", "`cairn umount /m`"},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if msg := tc.err.Error(); !strings.Contains(msg, tc.text) || cliCommand.MatchString(msg) {
			t.Errorf("%s: error %q: want %q in it and no cairn command", tc.name, msg, tc.text)
		}
		if a := errorLine(tc.err); !strings.HasPrefix(a, tc.err.Error()) || !strings.Contains(a, tc.logic) || strings.Contains(a, "\n") {
			t.Errorf("%s: printed %q, want the error with %q in one line", tc.name, a, tc.logic)
		}
	}
}

// TestHintsForFlagErrors: library errors whose fix is a CLI flag name no
// flag themselves (the API and cairn serve reach them too); the CLI's
// error line adds the flag. The errors come from the libraries' own calls
// where that needs no server.
func TestHintsForFlagErrors(t *testing.T) {
	ctx := context.Background()
	t.Setenv(vsphere.EnvUser, "")
	t.Setenv(vsphere.EnvPassword, "")
	_, noCreds := vsphere.LoadCredentials("")
	_, noURL := vsphere.ParseURL("")
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	_, notNBD := source.Open(ctx, img, source.Options{DirtyBitmap: "b0"})
	for _, tc := range []struct {
		name string
		err  error
		hint string
	}{
		{"no credentials", noCreds, "give --credentials FILE"},
		{"no URL", noURL, "give --vcenter https://HOST/sdk"},
		{"bitmap of a file", notNBD, "use --changed for a file"},
		{"bitmap not exported", &source.NoBitmapError{Source: "nbd://h/x", Bitmap: "b0"}, "start qemu-nbd with -B b0"},
		{"untrusted", &vsphere.UntrustedCertError{Host: "vc", Thumbprint: "AA:BB", Err: errors.New("x509: unknown authority")}, "--thumbprint AA:BB"},
		{"no thumbprint", fmt.Errorf("nbd command: %w", backupd.ErrNoThumbprint), "give --thumbprint"},
		{"no VM config", fmt.Errorf("point 1 of web: %w", boot.ErrNoConfig), "--firmware bios or efi"},
		{"busy", fmt.Errorf("unmount /mnt: %w", fusefs.ErrBusy), "--lazy"},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error from the library", tc.name)
			continue
		}
		if strings.Contains(tc.err.Error(), "--") {
			t.Errorf("%s: the library's error names a flag: %v", tc.name, tc.err)
		}
		if got := errorLine(tc.err); !strings.Contains(got, tc.hint) {
			t.Errorf("%s: %q lacks %q", tc.name, got, tc.hint)
		}
	}
}
