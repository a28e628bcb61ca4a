package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/cairnbackup/cairn/blockmap"
)

// A point's attachments (vm/config.json, the .vmx, the .nvram) travel
// inside its encrypted manifest: they are small, capped by blockmap at
// MaxAttachmentSize each and MaxAttachmentTotal per point, so no pack is
// needed. Manifests written before attachments were replicated hold none;
// their points read as points without attachments.

// readAttachments copies the point's attachments into the manifest.
func readAttachments(ctx context.Context, repo *blockmap.Repo, m *manifest) error {
	for _, a := range m.Point.Attachments {
		data, err := repo.Attachment(ctx, m.Point, a.Name)
		if err != nil {
			return fmt.Errorf("replicate %s point %s: %w", m.Point.VM, m.Point.ID, err)
		}
		if m.Attachments == nil {
			m.Attachments = map[string][]byte{}
		}
		m.Attachments[a.Name] = data
	}
	return nil
}

// normalizeAttachments keeps in the manifest's point only the attachments
// whose bytes the manifest holds (a manifest of an older cairn lists a
// point's attachments without their bytes).
func (m *manifest) normalizeAttachments() {
	if len(m.Point.Attachments) == 0 {
		return
	}
	var keep []blockmap.AttachmentInfo
	for _, a := range m.Point.Attachments {
		if _, ok := m.Attachments[a.Name]; ok {
			keep = append(keep, a)
		}
	}
	m.Point.Attachments = keep
}

// attachment returns the named attachment's bytes, checked against the
// point's record.
func (m *manifest) attachment(name string) ([]byte, error) {
	info, ok := m.Point.Attachment(name)
	data, held := m.Attachments[name]
	if !ok || !held {
		return nil, fmt.Errorf("point %s of %s has no attachment %q: %w", m.Point.ID, m.Point.VM, name, ErrNotFound)
	}
	if sum := sha256.Sum256(data); int64(len(data)) != info.Size || hex.EncodeToString(sum[:]) != info.SHA256 {
		return nil, fmt.Errorf("point %s of %s: attachment %q: %w", m.Point.ID, m.Point.VM, name, ErrCorrupt)
	}
	return data, nil
}

// Attachment reads the named attachment of a remote point. A point without
// it gives ErrNotFound; bytes that do not match the point's record give
// ErrCorrupt.
func (r *Remote) Attachment(ctx context.Context, vm, pointID, name string) ([]byte, error) {
	m, err := r.manifest(ctx, vm, pointID)
	if err != nil {
		return nil, err
	}
	return m.attachment(name)
}

// attachInto adds the manifest's attachments to the session of a pull.
func attachInto(s *blockmap.Session, m *manifest) error {
	for _, a := range m.Point.Attachments {
		data, err := m.attachment(a.Name)
		if err != nil {
			return err
		}
		if err := s.Attach(a.Name, data); err != nil {
			return err
		}
	}
	return nil
}
