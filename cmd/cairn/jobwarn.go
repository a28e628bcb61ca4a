package main

import (
	"fmt"
	"strings"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
)

// jobErrorText is the ERROR column of cairn jobs: the error of a job that
// failed, or the warnings of one that committed its point with some
// (disks left out of a backup).
func jobErrorText(j backupd.JobRecord) string {
	if j.Error != "" || len(j.Warnings) == 0 {
		return j.Error
	}
	return "warning: " + strings.Join(j.Warnings, "; ")
}

// skippedColumn names the disks a point left out, for the DISKS column of
// cairn points: "scsi0-1 (not backed up: independent)".
func skippedColumn(p blockmap.Point) []string {
	var out []string
	for _, sd := range backupd.SkippedDisks(p) {
		out = append(out, fmt.Sprintf("%s (not backed up: %s)", sd.Name, sd.Kind))
	}
	return out
}
