package backupd

import (
	"encoding/json"
	"fmt"

	"github.com/cairnbackup/cairn/backupd/vmconfig"
	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// notBackedUpWarning says what a restored VM lacks for a disk the point
// holds no data of.
func notBackedUpWarning(d vmconfig.Disk) string {
	what := "was left out of the backup"
	switch d.NotBackedUp {
	case vsphere.SkipIndependent:
		what = fmt.Sprintf("was an independent disk (%s), which vSphere snapshots leave out", d.Mode)
	case vsphere.SkipRDMPhysical:
		what = fmt.Sprintf("was a physical-mode raw device mapping (LUN %s), which vSphere snapshots leave out; it is created as an empty virtual disk: map the LUN again by hand if the VM needs it", orNone(d.RDMDevice))
	case vsphere.SkipExcluded:
		what = "was excluded from the backup"
	}
	return fmt.Sprintf("disk %s (%s) %s: it is created empty (%d bytes, mode %s); restore its data from elsewhere",
		d.Name, orNone(d.Label), what, d.Capacity, orDefaultMode(d.Mode))
}

func orDefaultMode(m string) string {
	if m == "" {
		return "persistent"
	}
	return m
}

// isEmptyDisk reports whether disk name is created empty.
func (j *restoreJob) isEmptyDisk(name string) bool {
	for _, d := range j.emptyDisks {
		if d.Name == name {
			return true
		}
	}
	return false
}

// emptyDisk is a PointDisk of zeros only: the content of a disk created
// empty.
type emptyDisk int64

func (e emptyDisk) ReadAt(b []byte, off int64) (int, error) {
	clear(b)
	return len(b), nil
}
func (e emptyDisk) Close() error                   { return nil }
func (e emptyDisk) Size() int64                    { return int64(e) }
func (e emptyDisk) DataExtents() []blockmap.Extent { return nil }

// SkippedDisks lists the disks point p left out (PointMeta.SkippedDisks;
// none for points of other sources and older points).
func SkippedDisks(p blockmap.Point) []SkippedDisk {
	var pm PointMeta
	if len(p.Meta) == 0 || json.Unmarshal(p.Meta, &pm) != nil {
		return nil
	}
	return pm.SkippedDisks
}

// SkippedDiskOf returns the record of a disk that point p left out
// (PointMeta.SkippedDisks), if it did.
func SkippedDiskOf(p blockmap.Point, name string) (SkippedDisk, bool) {
	for _, sd := range SkippedDisks(p) {
		if sd.Name == name {
			return sd, true
		}
	}
	return SkippedDisk{}, false
}
