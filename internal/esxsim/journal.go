package esxsim

import "time"

// Journal operations.
const (
	OpWrite          = "write"           // tracked guest write
	OpZero           = "zero"            // tracked guest write of zeros
	OpUntrackedWrite = "untracked-write" // write CBT missed (SilentlyMissChange)
	OpGrow           = "grow"            // disk capacity increased (CBT epoch reset)
	OpSnapshot       = "snapshot"        // snapshot created, disks frozen
	OpRemoveSnapshot = "remove-snapshot" // snapshot removed, frozen copies deleted
	OpCBTEnable      = "cbt-enable"
	OpCBTDisable     = "cbt-disable"
	OpCBTReset       = "cbt-reset"
	OpNFCUpload      = "nfc-upload" // a disk uploaded through an HttpNfcLease (Length: bytes of grains)
)

// JournalEntry is one event that changed a disk or its tracking.
type JournalEntry struct {
	Seq      int // 1, 2, ... in order
	Time     time.Time
	Op       string
	VM       string
	Disk     int   // disk index, -1 for VM-wide events
	Offset   int64 // byte range for writes
	Length   int64
	ChangeID string // changeId of the disk's snapshot (OpSnapshot), else ""
	Snapshot string // snapshot moref value (OpSnapshot, OpRemoveSnapshot)
}

// Journal returns a copy of every event so far.
func (s *Sim) Journal() []JournalEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]JournalEntry(nil), s.journal...)
}
