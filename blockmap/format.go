package blockmap

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Repository formats (cairn.json "format"). Every cairn refuses a format
// above the one it reads with ErrUnsupportedFormat, so a repository is
// raised to a new format only when it holds something an older cairn
// would read wrong, and only at the commit that writes it.
const (
	// FormatBase is what init writes and what every cairn reads.
	FormatBase = 1
	// FormatLineage: some point holds a disk whose lineage starts after
	// older versions of its disk id (a disk back after points without it).
	// A cairn from before lineages (DiskInfo.Lineage) reads those older
	// versions through the new disk's holes: wrong bytes, so it must refuse.
	FormatLineage = 2
)

// raiseFormat makes cairn.json name at least format f (never lowers it). It
// is called before the commit that needs f: a crash in between leaves a
// repository of format f without such a point, which is harmless.
func (r *Repo) raiseFormat(f int) error {
	r.fmtMu.Lock()
	defer r.fmtMu.Unlock()
	if r.cfg.Format >= f {
		return nil
	}
	path := filepath.Join(r.dir, "cairn.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("raise repository format to %d: %w", f, err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("raise repository format to %d: %w: cairn.json is not valid JSON: %v", f, ErrNotRepository, err)
	}
	if cfg.Format < f {
		// Only the format changes: the rest is kept as another process (or
		// an older cairn) wrote it.
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(data, &raw); err != nil {
			return fmt.Errorf("raise repository format to %d: %w", f, err)
		}
		raw["format"] = json.RawMessage(fmt.Sprint(f))
		out, err := json.MarshalIndent(raw, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(path, append(out, '\n')); err != nil {
			return fmt.Errorf("raise repository format to %d: %w", f, err)
		}
		if r.log != nil {
			r.log.Info("repository format raised: cairn before lineages can no longer open it", "dir", r.dir, "format", f)
		}
		cfg.Format = f
	}
	r.cfg.Format = cfg.Format
	return nil
}
