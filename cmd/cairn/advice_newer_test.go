package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
)

// A point's vm/config.json recorded by a newer cairn: the advice says to use
// that cairn, or --vm-config in its place.
func TestAdviceForNewerVMConfig(t *testing.T) {
	err := fmt.Errorf("restore of web point 1: point 1 of web: vm/config.json: %w", &vmconfig.NewerError{Field: "tpm", Msg: "is unknown to this cairn"})
	h := hintFor(err)
	if !strings.Contains(h, "newer one") || !strings.Contains(h, "--vm-config") {
		t.Fatalf("hint %q", h)
	}
}
