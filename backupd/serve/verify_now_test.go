package serve

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestVerifyNowShowsRunningAtOnce: once POST /api/v1/verify (VerifyNow)
// has answered, the status shows that verify running or finished, never
// the previous verify as if it were this one's result.
func TestVerifyNowShowsRunningAtOnce(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	withRepo(t, repo, func(r *blockmap.Repo) { writeTestPoint(t, r, "imp-1", time.Now(), 1) })
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf("repository: %s\nlisten: 127.0.0.1:0\n", repo)))
	if err != nil {
		t.Fatal(err)
	}
	s, stop := runUntilStopped(t, repo, cfg)
	defer stop()
	ctx := context.Background()
	for round := range 5 {
		asked := time.Now().UTC()
		if err := s.VerifyNow(); err != nil {
			t.Fatal(err)
		}
		st, err := s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Verify.Running && st.Verify.Start.Before(asked) {
			t.Fatalf("round %d: right after VerifyNow the status shows a verify started %s, before it was asked (%s), as finished", round, st.Verify.Start, asked)
		}
		deadline := time.Now().Add(time.Minute)
		for st.Verify.Running {
			if time.Now().After(deadline) {
				t.Fatal("verify did not end")
			}
			time.Sleep(10 * time.Millisecond)
			if st, err = s.Status(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}
