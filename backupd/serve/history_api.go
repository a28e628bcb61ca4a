package serve

import (
	"net/http"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/partinfo/volumes"
)

// HistoryResponse is GET /api/v1/vms/{vm}/history?fs=NAME&path=P: the
// versions of one guest path across every point of the VM, as `cairn
// history` tells them (guestfind.PathHistory).
type HistoryResponse struct {
	VM          string          `json:"vm"`
	Path        string          `json:"path"`
	Filesystems []HistoryFS     `json:"filesystems"`
	Stats       guestfind.Stats `json:"stats"`
}

// HistoryFS is the history of the path in one filesystem.
type HistoryFS struct {
	Filesystem string       `json:"filesystem"`
	FSType     string       `json:"fs_type,omitempty"`
	Versions   int          `json:"versions"`
	Runs       []HistoryRun `json:"runs"`
}

// HistoryRun is consecutive points holding the same version (Version 0:
// absent; Error: unreadable).
type HistoryRun struct {
	FirstPoint string     `json:"first_point"`
	FirstTime  time.Time  `json:"first_time"`
	LastPoint  string     `json:"last_point"`
	LastTime   time.Time  `json:"last_time"`
	Points     int        `json:"points"`
	Version    int        `json:"version"`
	Entry      *FileEntry `json:"entry,omitempty"`
	SHA256     string     `json:"sha256,omitempty"`
	Error      string     `json:"error,omitempty"`
}

// selectorOf turns a filesystem name (sda/p1, sda/whole, lvm/vg/lv, ...)
// into the guestfind selector of `cairn history --disk/--part/--volume`.
func selectorOf(name string) guestfind.Selector {
	name = strings.Trim(name, "/")
	if name == "" {
		return guestfind.Selector{}
	}
	first, rest, _ := strings.Cut(name, "/")
	switch first {
	case volumes.MDDir, volumes.LVMDir, volumes.LDMDir, volumes.BtrfsDir:
		return guestfind.Selector{Volume: name}
	}
	return guestfind.Selector{Disk: first, Part: rest}
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	h, err := guestfind.PathHistory(r.Context(), guestfind.Local(s.repo), r.PathValue("vm"), q.Get("path"), selectorOf(q.Get("fs")))
	if err != nil {
		browseError(w, err)
		return
	}
	out := HistoryResponse{VM: h.VM, Path: "/" + strings.TrimPrefix(h.Path, "."), Filesystems: []HistoryFS{}, Stats: h.Stats}
	for _, f := range h.Filesystems {
		hf := HistoryFS{Filesystem: f.FS.Name, FSType: f.FS.Type, Versions: f.Versions, Runs: []HistoryRun{}}
		for _, run := range f.Runs {
			if len(run.Points) == 0 {
				continue
			}
			first, last := run.Points[0], run.Points[len(run.Points)-1]
			hr := HistoryRun{FirstPoint: first.ID, FirstTime: first.Time, LastPoint: last.ID, LastTime: last.Time, Points: len(run.Points), Version: run.Version}
			if run.Entry != nil {
				e := fileEntry(h.Path[strings.LastIndex(h.Path, "/")+1:], *run.Entry, nil)
				hr.Entry, hr.SHA256 = &e, run.Entry.SHA256
				if id, guarded := identityOf(r); guarded && id.Role < routeRole("POST /api/v1/downloads") {
					// a content hash lets its holder test guesses of a
					// small file's contents (a PIN, a key, a shadow line)
					// offline: only who may read the file sees it
					hr.SHA256 = ""
				}
			}
			if run.Err != nil {
				hr.Error = run.Err.Error()
			}
			hf.Runs = append(hf.Runs, hr)
		}
		out.Filesystems = append(out.Filesystems, hf)
	}
	writeJSON(w, http.StatusOK, out)
}
