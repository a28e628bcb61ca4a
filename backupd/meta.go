package backupd

import (
	"encoding/json"

	"github.com/cairnbackup/cairn/backupd/vsphere"
	"github.com/cairnbackup/cairn/blockmap"
)

// DiskMeta is what a point keeps about each vSphere disk (DiskInfo.Meta):
// the changeId stored here is the one the next incremental backup starts
// from.
type DiskMeta struct {
	Label       string `json:"label,omitempty"`
	BackingFile string `json:"backing_file,omitempty"`
	Capacity    int64  `json:"capacity"`
	UUID        string `json:"uuid,omitempty"`
	DeviceKey   int32  `json:"device_key"`
	ChangeID    string `json:"change_id,omitempty"`
	// BaseChangeID is the changeId the areas were queried since ("*" for a
	// full backup through CBT, "" without CBT).
	BaseChangeID string `json:"base_change_id,omitempty"`
	Transport    string `json:"transport,omitempty"`
	BytesRead    int64  `json:"bytes_read"`
	// ChangedBytes is what CBT (or the allocation map) asked to read.
	ChangedBytes int64  `json:"changed_bytes"`
	Full         bool   `json:"full"`
	FullReason   string `json:"full_reason,omitempty"`
}

// diskMeta is what a point keeps about a snapshot's disk before it is read.
func diskMeta(d vsphere.Disk) DiskMeta {
	return DiskMeta{Label: d.Label, BackingFile: d.FileName, Capacity: d.Capacity, UUID: d.UUID, DeviceKey: d.Key, ChangeID: d.ChangeID}
}

// PointMeta is what a point keeps about the job (Point.Meta).
type PointMeta struct {
	Source          string `json:"source"`
	VCenter         string `json:"vcenter"`
	VMMoRef         string `json:"vm_moref"`
	VMName          string `json:"vm_name"`
	HardwareVersion string `json:"hardware_version,omitempty"`
	JobID           string `json:"job_id"`
	Snapshot        string `json:"snapshot"`
	Consistency     string `json:"consistency"`
	QuiesceError    string `json:"quiesce_error,omitempty"`
	// SkippedDisks are the VM's disks the point holds no data of
	// (independent, physical-mode RDM, excluded); Warnings what the
	// backup warned about.
	SkippedDisks []SkippedDisk `json:"skipped_disks,omitempty"`
	Warnings     []string      `json:"warnings,omitempty"`
}

// ReadDiskMeta decodes the vSphere metadata of a point's disk; ok is false
// when the disk has none (for example an imported one).
func ReadDiskMeta(d blockmap.DiskInfo) (DiskMeta, bool) {
	var m DiskMeta
	if len(d.Meta) == 0 || json.Unmarshal(d.Meta, &m) != nil {
		return DiskMeta{}, false
	}
	return m, true
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs are marshalled
	}
	return b
}
