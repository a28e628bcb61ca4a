package testutil

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/blockmap"
)

// NewRepo creates a repository with the default options in a temporary
// directory, opens it and closes it when the test ends.
func NewRepo(t testing.TB) *blockmap.Repo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	ctx := context.Background()
	if err := blockmap.Init(ctx, dir, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := blockmap.Open(ctx, dir, blockmap.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
