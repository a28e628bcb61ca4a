package main

import (
	"strings"

	"github.com/cairnbackup/cairn/backupd"
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
