package blockmap

import (
	"context"
	"os"
	"testing"
)

// BenchmarkCatalogRead reads the catalog of the repository in
// $CAIRN_SCALE_REPO (a scale fixture, internal/scalefixture) the way a
// long-running process does after a change: each iteration finds the
// kept catalog stale and reads the index.
func BenchmarkCatalogRead(b *testing.B) {
	dir := os.Getenv("CAIRN_SCALE_REPO")
	if dir == "" {
		b.Skip("set CAIRN_SCALE_REPO to a scale fixture (go run ./internal/scalefixture/buildfixture)")
	}
	ctx := context.Background()
	r, err := Open(ctx, dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Catalog(ctx); err != nil { // opens the index
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.updates.Add(1) // as after a commit
		if _, err := r.Catalog(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
