package serve

import (
	"gopkg.in/yaml.v3"

	"github.com/cairnbackup/cairn/backupd"
)

// excludeDisks reads a job's exclude_disks: list: disks not to back up,
// DISK or VM/DISK (scsi0:1, scsi0-*, "Hard disk 2", "db-*/scsi0:2").
func (p *parser) excludeDisks(m map[string]*yaml.Node, what string, j *Job) error {
	v := m["exclude_disks"]
	if v == nil {
		return nil
	}
	list, err := p.strs(v, what+": exclude_disks")
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return p.errf(v, "%s: exclude_disks is empty", what)
	}
	if j.ExcludeDisks, err = backupd.ParseDiskExclusions(list); err != nil {
		return p.errf(v, "%s: exclude_disks: %v", what, err)
	}
	return nil
}
