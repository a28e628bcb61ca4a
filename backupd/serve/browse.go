package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/backupd/guestfind"
	"github.com/cairnbackup/cairn/blockmap"
)

// Open points kept for browsing (the file endpoints): opening one scans
// its disks' partition tables and volumes and opens every filesystem, so
// the directories a console user clicks through reuse it.
const (
	maxOpenBrowsers  = 4
	browserIdleClose = 5 * time.Minute
)

// browseState holds the points open for browsing and the key that signs
// download tickets (download.go). The zero value is ready.
type browseState struct {
	mu   sync.Mutex
	open map[string]*openBrowser
	key  []byte // HMAC key of download tickets, made on first use
}

type openBrowser struct {
	b     *guestfind.Browser
	err   error
	ready chan struct{}
	refs  int
	used  time.Time
}

// browser returns point p open for browsing and the function that
// releases it. Concurrent requests for one point share one open.
func (s *Server) browser(ctx context.Context, p blockmap.Point) (*guestfind.Browser, func(), error) {
	st := &s.browse
	k := fmt.Sprintf("%s\x00%d", p.VM, p.Gen)
	st.mu.Lock()
	if st.open == nil {
		st.open = map[string]*openBrowser{}
	}
	e, ok := st.open[k]
	if !ok {
		e = &openBrowser{ready: make(chan struct{})}
		st.open[k] = e
		e.refs++
		st.mu.Unlock()
		// Not the request's context: the open is shared.
		e.b, e.err = guestfind.Browse(context.WithoutCancel(ctx), guestfind.Local(s.repo), p)
		st.mu.Lock()
		if e.err != nil {
			delete(st.open, k) // the next request tries again
		}
		close(e.ready)
	} else {
		e.refs++
	}
	st.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		s.releaseBrowser(e)
		return nil, nil, ctx.Err()
	}
	if e.err != nil {
		s.releaseBrowser(e)
		return nil, nil, e.err
	}
	var once sync.Once
	return e.b, func() { once.Do(func() { s.releaseBrowser(e) }) }, nil
}

func (s *Server) releaseBrowser(e *openBrowser) {
	st := &s.browse
	st.mu.Lock()
	defer st.mu.Unlock()
	e.refs--
	e.used = time.Now()
	st.evictLocked()
	if e.refs == 0 {
		// Closed when still unused then, even if no request comes.
		time.AfterFunc(browserIdleClose+time.Second, s.sweepBrowsers)
	}
}

func (s *Server) sweepBrowsers() {
	s.browse.mu.Lock()
	defer s.browse.mu.Unlock()
	s.browse.evictLocked()
}

// evictLocked closes what is idle: beyond maxOpenBrowsers the least
// recently used, and anything unused for browserIdleClose.
func (st *browseState) evictLocked() {
	type idle struct {
		k string
		e *openBrowser
	}
	var free []idle
	for k, o := range st.open {
		if o.refs == 0 && o.b != nil {
			free = append(free, idle{k, o})
		}
	}
	sort.Slice(free, func(i, j int) bool { return free[i].e.used.Before(free[j].e.used) })
	excess := len(st.open) - maxOpenBrowsers
	for _, f := range free {
		if excess > 0 || time.Since(f.e.used) > browserIdleClose {
			delete(st.open, f.k)
			f.e.b.Close()
			excess--
		}
	}
}

// closeBrowsers closes every open point (the server stops).
func (s *Server) closeBrowsers() {
	st := &s.browse
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, o := range st.open {
		if o.b != nil {
			o.b.Close()
		}
		delete(st.open, k)
	}
}

// browseError answers a failed point, filesystem or path lookup.
func browseError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, blockmap.ErrNotFound), errors.Is(err, guestfind.ErrNoFilesystem), errors.Is(err, fs.ErrNotExist),
		errors.Is(err, guestfind.ErrPathNotFound):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, err)
	default:
		writeError(w, http.StatusUnprocessableEntity, err)
	}
}
