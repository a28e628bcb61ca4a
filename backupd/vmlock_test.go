package backupd

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// TestLockRestoreTarget: a restore that overwrites a VM (in place, or
// replacing one of the same name) takes that VM's repository lock, so it
// is refused while a backup of the VM runs and keeps backups out while
// it writes; a restore to a new VM takes none.
func TestLockRestoreTarget(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, err := blockmap.Open(ctx, dir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	p := blockmap.Point{VM: "db", ID: "p1"}
	for _, tc := range []struct {
		name   string
		req    RestoreRequest
		locks  string // the VM locked, "" for none
		refuse bool   // refused while "db" is held
	}{
		{"in place", RestoreRequest{Point: p, InPlace: true}, "db", true},
		{"in place, named", RestoreRequest{Point: p, InPlace: true, Create: vsphere.CreateSpec{Name: "db"}}, "db", true},
		{"replace another VM", RestoreRequest{Point: p, Replace: true, Create: vsphere.CreateSpec{Name: "db-copy"}}, "db-copy", false},
		{"new VM", RestoreRequest{Point: p, Create: vsphere.CreateSpec{Name: "db"}}, "", false},
		{"name the repository cannot hold", RestoreRequest{Point: p, Replace: true, Create: vsphere.CreateSpec{Name: "a/b"}}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := LockRestoreTarget(ctx, repo, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.locks == "" {
				if l != nil {
					t.Fatalf("locked %s", l.VM())
				}
				l.Release()
			} else {
				if _, err := repo.LockVM(ctx, tc.locks, "backup"); !errors.Is(err, blockmap.ErrInUse) {
					t.Fatalf("a backup of %s during the restore: %v", tc.locks, err)
				}
				l.Release()
			}
			backup, err := repo.LockVM(ctx, "db", "cairn backup")
			if err != nil {
				t.Fatal(err)
			}
			defer backup.Release()
			l, err = LockRestoreTarget(ctx, repo, tc.req)
			var locked *blockmap.VMLockedError
			if got := errors.As(err, &locked); got != tc.refuse {
				t.Fatalf("restore while a backup of db runs: %v, want refused %v", err, tc.refuse)
			}
			l.Release()
		})
	}
}
