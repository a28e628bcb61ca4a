package serve

import (
	"net/http"
	"syscall"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// RepositoryOverview is GET /api/v1/repository: what the console's
// dashboard shows beside /api/v1/status: the repository's filesystem
// space and every VM's recovery point objective.
type RepositoryOverview struct {
	Dir   string     `json:"dir"`
	Space *Space     `json:"space,omitempty"`
	RPO   []RPOState `json:"rpo"`
	// SpaceError: the space could not be read.
	SpaceError string `json:"space_error,omitempty"`
}

// Space is the size of the filesystem holding the repository.
type Space struct {
	Size int64 `json:"size"`
	Used int64 `json:"used"`
	Free int64 `json:"free"` // available to the repository's owner
}

// RPOState is one VM of a job with an RPO (rpo:, or notify's default):
// breached when its newest point is older than the RPO, or it has none.
type RPOState struct {
	VM       string    `json:"vm"`
	Job      string    `json:"job"`
	RPO      string    `json:"rpo"`
	Latest   time.Time `json:"latest,omitzero"`
	Breached bool      `json:"breached"`
}

func (s *Server) handleRepository(w http.ResponseWriter, r *http.Request) {
	cat, err := s.repo.Catalog(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out := RepositoryOverview{Dir: s.repo.Dir(), RPO: []RPOState{}}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.repo.Dir(), &st); err != nil {
		out.SpaceError = err.Error()
	} else {
		bs := int64(st.Bsize)
		out.Space = &Space{Size: int64(st.Blocks) * bs, Used: int64(st.Blocks-st.Bfree) * bs, Free: int64(st.Bavail) * bs}
	}
	out.RPO = rpoStates(s.Config(), cat, time.Now())
	writeJSON(w, http.StatusOK, out)
}

// rpoStates is the RPO state of every VM of cat that a job with an RPO
// selects (the first such job), as of now.
func rpoStates(cfg *Config, cat []blockmap.VMSummary, now time.Time) []RPOState {
	out := []RPOState{}
	seen := map[string]bool{}
	for i := range cfg.Jobs {
		j := &cfg.Jobs[i]
		rpo := j.EffectiveRPO()
		if rpo <= 0 {
			continue
		}
		for _, v := range cat {
			if seen[v.Name] || !j.SelectsByName(v.Name) {
				continue
			}
			seen[v.Name] = true
			rs := RPOState{VM: v.Name, Job: j.Name, RPO: rpo.String(), Breached: true}
			if p, ok := v.Latest(); ok {
				rs.Latest, rs.Breached = p.Time, now.Sub(p.Time) > rpo
			}
			out = append(out, rs)
		}
	}
	return out
}
