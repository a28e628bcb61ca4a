package fusefs

import (
	"encoding/json"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// pointInfo is the content of info.json.
type pointInfo struct {
	VM          string          `json:"vm"`
	Point       string          `json:"point"`
	Generation  uint32          `json:"generation"`
	Time        time.Time       `json:"time"`
	Consistency string          `json:"consistency"`
	Started     time.Time       `json:"started"`
	Committed   time.Time       `json:"committed"`
	StoredBytes int64           `json:"stored_bytes"`
	Disks       []diskInfo      `json:"disks"`
	Meta        json.RawMessage `json:"meta,omitempty"`
	// VMConfig is the path of the VM's recorded configuration in the
	// point ("vm/config.json"), empty when the point has none;
	// Attachments list every file committed with the point.
	VMConfig    string                    `json:"vm_config,omitempty"`
	Attachments []blockmap.AttachmentInfo `json:"attachments,omitempty"`
	// Verdict is the suspicious-change verdict kept with the point
	// (backupd/anomaly: status, reason, figures); absent in older points.
	Verdict json.RawMessage `json:"verdict,omitempty"`
}

type diskInfo struct {
	Name          string          `json:"name"`
	Image         string          `json:"image"`
	Size          int64           `json:"size"`
	BlockSize     int             `json:"block_size"`
	StoredBytes   int64           `json:"stored_bytes"`
	ReadBytes     int64           `json:"read_bytes"`
	ChangedBlocks int64           `json:"changed_blocks"`
	ZeroedBlocks  int64           `json:"zeroed_blocks"`
	Full          bool            `json:"full"`
	FullReason    string          `json:"full_reason,omitempty"`
	Meta          json.RawMessage `json:"meta,omitempty"`
	// Content: what the stored blocks looked like (backupd/anomaly).
	Content json.RawMessage `json:"content,omitempty"`
}

// pointInfoJSON renders a point's info.json, indented, ending in a newline.
func pointInfoJSON(p blockmap.Point) ([]byte, error) {
	info := pointInfo{
		VM: p.VM, Point: p.ID, Generation: p.Gen, Time: p.Time, Consistency: p.Consistency,
		Started: p.Started, Committed: p.Committed, StoredBytes: p.StoredBytes(), Meta: validJSON(p.Meta),
		Disks: []diskInfo{}, Attachments: p.Attachments, Verdict: validJSON(p.Verdict),
	}
	if _, ok := p.Attachment(vmConfigAttachment); ok {
		info.VMConfig = vmConfigAttachment
	}
	for _, d := range p.Disks {
		info.Disks = append(info.Disks, diskInfo{
			Name: d.Name, Image: "disks/" + d.Name + ".img", Size: d.Size, BlockSize: d.BlockSize,
			StoredBytes: d.StoredBytes, ReadBytes: d.ReadBytes, ChangedBlocks: d.ChangedBlocks,
			ZeroedBlocks: d.ZeroedBlocks, Full: d.Full, FullReason: d.FullReason, Meta: validJSON(d.Meta),
			Content: validJSON(d.Content),
		})
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// vmConfigAttachment is the attachment a VM's configuration is kept in
// (backupd/vmconfig.AttachmentConfig; fusefs does not import backupd).
const vmConfigAttachment = "vm/config.json"

// validJSON drops metadata that is not valid JSON, so info.json always is.
func validJSON(m json.RawMessage) json.RawMessage {
	if len(m) == 0 || !json.Valid(m) {
		return nil
	}
	return m
}
