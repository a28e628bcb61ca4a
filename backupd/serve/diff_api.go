package serve

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/blockmap"
)

// DiffResponse is GET /api/v1/points/{vm}/{point}/diff?against=P: what
// changed in the guest files from point Against to Point, as `cairn
// diff --from Against --to Point` tells it (guestfind.Diff). Changes
// holds at most Limit changes (Truncated: more followed); the Summary
// counts them all.
type DiffResponse struct {
	VM          string                 `json:"vm"`
	Point       string                 `json:"point"`
	Against     string                 `json:"against"`
	Path        string                 `json:"path"`
	Filesystems []guestfind.DiffFS     `json:"filesystems"`
	Changes     []guestfind.Change     `json:"changes"`
	Truncated   bool                   `json:"truncated,omitempty"`
	Limit       int                    `json:"limit"`
	Summary     *guestfind.DiffSummary `json:"summary"`
	Stats       guestfind.DiffStats    `json:"stats"`
}

const (
	diffDefaultLimit = 1000
	diffMaxLimit     = 100000
)

func (s *Server) handleDiff(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	vm := r.PathValue("vm")
	to, err := s.repo.ResolvePoint(r.Context(), vm, r.PathValue("point"))
	if err != nil {
		browseError(w, err)
		return
	}
	limit := diffDefaultLimit
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a positive number of changes (at most %d)", v, diffMaxLimit))
			return
		}
		limit = min(limit, diffMaxLimit)
	}
	var from blockmap.Point
	if against := q.Get("against"); against != "" {
		if from, err = s.repo.ResolvePoint(r.Context(), vm, against); err != nil {
			browseError(w, fmt.Errorf("against: %w", err))
			return
		}
	} else {
		pts, err := s.repo.Points(r.Context(), vm)
		if err != nil {
			browseError(w, err)
			return
		}
		slices.SortFunc(pts, func(a, b blockmap.Point) int { return a.Time.Compare(b.Time) })
		i := slices.IndexFunc(pts, func(p blockmap.Point) bool { return p.ID == to.ID })
		if i <= 0 {
			writeError(w, http.StatusNotFound, fmt.Errorf("point %s is the oldest of %s: there is no point before it to compare with (give against=POINT)", to.ID, vm))
			return
		}
		from = pts[i-1]
	}
	opts := guestfind.DiffOptions{Selector: selectorOf(q.Get("fs")), Path: q.Get("path"), Exclude: q["exclude"], Entropy: true}
	out := DiffResponse{VM: vm, Point: to.ID, Against: from.ID, Path: "/", Changes: []guestfind.Change{}, Limit: limit, Summary: guestfind.NewDiffSummary()}
	if p, err := guestfind.CleanPath(opts.Path); err == nil && p != "." {
		out.Path = "/" + p
	}
	// A viewer learns which files changed (as listings tell), not the
	// entropy of their bytes: only who may read a file sees it (the
	// encrypted-looking marker stays).
	id, guarded := identityOf(r)
	hideEntropy := guarded && id.Role < routeRole("POST /api/v1/downloads")
	res, err := guestfind.Diff(r.Context(), guestfind.Local(s.repo), from, to, opts, func(c guestfind.Change) error {
		if hideEntropy {
			for _, sd := range []*guestfind.Side{c.Old, c.New} {
				if sd != nil {
					sd.Entropy = nil
				}
			}
		}
		out.Summary.Add(c)
		if len(out.Changes) < limit {
			out.Changes = append(out.Changes, c)
		} else {
			out.Truncated = true
		}
		return nil
	})
	if err != nil {
		browseError(w, err)
		return
	}
	out.Filesystems, out.Stats = res.Filesystems, res.Stats
	if out.Filesystems == nil {
		out.Filesystems = []guestfind.DiffFS{}
	}
	writeJSON(w, http.StatusOK, out)
}
