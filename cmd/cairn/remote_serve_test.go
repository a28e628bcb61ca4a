package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// TestOpenServeRemoteUnknown: serve's opener names a remote the
// repository does not have and says how to add it (the API answers 404).
func TestOpenServeRemoteUnknown(t *testing.T) {
	_, err := openServeRemote(context.Background(), t.TempDir(), "offsite", true)
	if !errors.Is(err, serve.ErrUnknownRemote) || !strings.Contains(err.Error(), "cairn remote add offsite") {
		t.Fatalf("open an unknown remote: %v", err)
	}
}
