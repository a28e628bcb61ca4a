package main

import (
	"testing"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// TestExampleConfigIsValid keeps `cairn config example` loadable by serve.
func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := serve.ParseConfig("example", []byte(exampleConfig))
	if err != nil {
		t.Fatalf("cairn config example does not validate: %v", err)
	}
	if cfg == nil {
		t.Fatal("no config")
	}
}
