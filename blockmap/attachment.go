package blockmap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// prefixAttachment keys the attachments of points:
// a | vm | 0 | gen u32 | name -> the attachment's bytes.
const prefixAttachment byte = 'a'

// Attachment limits: a point's attachments are small files (a VM's
// configuration, its .vmx and .nvram), kept in the index.
const (
	MaxAttachmentSize  = 8 << 20
	MaxAttachmentTotal = 16 << 20
)

// AttachmentInfo describes one attachment of a point.
type AttachmentInfo struct {
	// Name is a relative path of one or two elements, "vm/config.json".
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Attachment returns the named attachment's info.
func (p Point) Attachment(name string) (AttachmentInfo, bool) {
	for _, a := range p.Attachments {
		if a.Name == name {
			return a, true
		}
	}
	return AttachmentInfo{}, false
}

// ValidateAttachmentName checks an attachment name: one or two path
// elements, each a valid name (ValidateName).
func ValidateAttachmentName(name string) error {
	parts := strings.Split(name, "/")
	if len(parts) > 2 {
		return fmt.Errorf("attachment name %q: %w: at most one directory level", name, ErrInvalid)
	}
	for _, p := range parts {
		if err := ValidateName("attachment", p); err != nil {
			return fmt.Errorf("attachment name %q: %w", name, err)
		}
	}
	return nil
}

func attachmentKey(vm string, gen uint32, name string) []byte {
	return append(vmGenKey(prefixAttachment, vm, gen), name...)
}

// Attach adds a named file to the point the session writes. It is stored
// in the same transaction as the point's catalog record, so it exists
// exactly when the point does, and never changes afterwards. Attaching a
// name twice replaces the earlier data.
func (s *Session) Attach(name string, data []byte) error {
	if err := ValidateAttachmentName(name); err != nil {
		return err
	}
	if len(data) > MaxAttachmentSize {
		return fmt.Errorf("attachment %q: %w: %d bytes is more than %d", name, ErrInvalid, len(data), MaxAttachmentSize)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return fmt.Errorf("attachment %q: session already ended", name)
	}
	if s.attach == nil {
		s.attach = map[string][]byte{}
	}
	total := len(data)
	for n, d := range s.attach {
		if n != name {
			total += len(d)
		}
	}
	if total > MaxAttachmentTotal {
		return fmt.Errorf("attachment %q: %w: the point's attachments would exceed %d bytes", name, ErrInvalid, MaxAttachmentTotal)
	}
	s.attach[name] = slices.Clone(data)
	return nil
}

// attachmentInfos lists the session's attachments, sorted by name.
func (s *Session) attachmentInfos() []AttachmentInfo {
	var out []AttachmentInfo
	for n, d := range s.attach {
		sum := sha256.Sum256(d)
		out = append(out, AttachmentInfo{Name: n, Size: int64(len(d)), SHA256: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(out, func(a, b AttachmentInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// writeAttachments stores the session's attachments in txn.
func (s *Session) writeAttachments(txn *badger.Txn) error {
	for n, d := range s.attach {
		if err := txn.Set(attachmentKey(s.vm, s.gen, n), d); err != nil {
			return fmt.Errorf("write attachment %q: %w", n, err)
		}
	}
	return nil
}

// deleteAttachments removes the attachments of a point in txn.
func deleteAttachments(txn *badger.Txn, vm string, gen uint32) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: vmGenKey(prefixAttachment, vm, gen)})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Attachment reads the named attachment of a committed point. A point
// without it gives an ErrNotFound error; stored bytes that do not match
// the point's record give ErrCorrupt.
func (r *Repo) Attachment(ctx context.Context, p Point, name string) ([]byte, error) {
	info, ok := p.Attachment(name)
	if !ok {
		return nil, fmt.Errorf("point %s of %s has no attachment %q: %w", p.ID, p.VM, name, ErrNotFound)
	}
	var data []byte
	err := r.view(ctx, func(db *badger.DB) error {
		return db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(attachmentKey(p.VM, p.Gen, name))
			if err != nil {
				return err
			}
			data, err = item.ValueCopy(nil)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("point %s of %s: attachment %q: %w (deleted with its point?)", p.ID, p.VM, name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("point %s of %s: read attachment %q: %w", p.ID, p.VM, name, err)
	}
	if sum := sha256.Sum256(data); int64(len(data)) != info.Size || hex.EncodeToString(sum[:]) != info.SHA256 {
		return nil, fmt.Errorf("point %s of %s: attachment %q: %w", p.ID, p.VM, name, ErrCorrupt)
	}
	return data, nil
}
