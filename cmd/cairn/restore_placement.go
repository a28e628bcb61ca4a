package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/backupd/vsphere"
)

// printPlacement shows where a new VM went: one line with its folder,
// resource pool, host and each disk's datastore. A recorded item that no
// longer exists was logged by the restore (one warning line each) and is
// in --json's placement.fallbacks.
func printPlacement(out io.Writer, p *vsphere.Placed) {
	if p == nil {
		return
	}
	how := "default placement (the point records none)"
	if p.Original {
		how = "original placement"
	}
	switch n := len(p.Fallbacks); n {
	case 0:
	case 1:
		how += ", 1 recorded item not found"
	default:
		how += fmt.Sprintf(", %d recorded items not found", n)
	}
	var disks []string
	for _, n := range slices.Sorted(maps.Keys(p.Disks)) {
		disks = append(disks, n+"@"+p.Disks[n])
	}
	fmt.Fprintf(out, "\tplaced (%s): folder %s\tpool %s\thost %s\tdatastore %s\tdisks %s\n", how, p.Folder, p.ResourcePool, p.Host, p.Datastore, strings.Join(disks, " "))
}
