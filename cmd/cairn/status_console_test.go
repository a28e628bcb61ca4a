package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// TestStatusNamesConsole: cairn status shows where the web console is, so
// an administrator who starts at the CLI finds it without the docs.
func TestStatusNamesConsole(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, "https://backup.example.com:8480", serve.Status{Repository: "/srv/cairn/repo"})
	if !strings.Contains(out.String(), "console https://backup.example.com:8480/ui/") {
		t.Errorf("cairn status does not name the console:\n%s", out.String())
	}
}
