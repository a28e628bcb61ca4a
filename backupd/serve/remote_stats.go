package serve

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// openAPIRemote opens the remote named by the request's {name} for an API
// answer (90 s at most), or writes the error: 400 for a bad name, 404 for
// a remote the repository does not have, 502 when the store fails. The
// caller calls release when it is done.
func (s *Server) openAPIRemote(w http.ResponseWriter, r *http.Request) (o *OpenedRemote, ctx context.Context, release func(), ok bool) {
	name := r.PathValue("name")
	if err := blockmap.ValidateName("remote", name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return nil, nil, nil, false
	}
	if s.remotes == nil {
		writeError(w, http.StatusNotImplemented, errors.New("this server cannot open remotes"))
		return nil, nil, nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 90*time.Second)
	o, err := s.remotes(ctx, s.repo.Dir(), name, false)
	if err != nil {
		cancel()
		code := http.StatusBadGateway
		if errors.Is(err, ErrUnknownRemote) {
			code = http.StatusNotFound
		}
		writeError(w, code, err)
		return nil, nil, nil, false
	}
	return o, ctx, func() { o.Release(); cancel() }, true
}

// handleRemoteStats answers GET /api/v1/remotes/{name}/stats: what the
// remote holds (as cairn remote stats NAME --json).
func (s *Server) handleRemoteStats(w http.ResponseWriter, r *http.Request) {
	o, ctx, release, ok := s.openAPIRemote(w, r)
	if !ok {
		return
	}
	defer release()
	st, err := o.Remote.Stats(ctx)
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"remote": r.PathValue("name"), "stats": st})
}
