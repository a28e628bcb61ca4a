package serve

import (
	"archive/tar"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/partinfo"
)

// DownloadTTL is how long a download URL minted by POST
// /api/v1/downloads stays valid (a resumed download needs a valid URL).
const DownloadTTL = 10 * time.Minute

// Download tickets: POST /api/v1/downloads (with the bearer token) mints
// a URL /api/v1/download/TICKET that a browser can follow without the
// token (a plain link cannot send an Authorization header). TICKET is
// base64url(JSON claims) "." base64url(HMAC-SHA256(key, claims)); the key
// is random per server process and never leaves it, so a ticket is
// valid only for the one path of one point until it expires, and a
// restart of serve voids every ticket.
type ticketClaims struct {
	VM      string `json:"vm"`
	Point   string `json:"point"` // the point's id, never "latest": a resume reads the same point
	FS      string `json:"fs"`
	Path    string `json:"path"`
	Expires int64  `json:"exp"` // Unix seconds
	// Who minted the ticket (a token's name), for the audit log (access.go).
	Who string `json:"who,omitempty"`
}

// ErrTicket is a download URL whose ticket is damaged, forged or
// expired.
var ErrTicket = errors.New("download URL not valid")

func (s *Server) ticketKey() []byte {
	st := &s.browse
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.key == nil {
		st.key = make([]byte, 32)
		if _, err := rand.Read(st.key); err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
	}
	return st.key
}

func (s *Server) signTicket(c ticketClaims) (string, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	body := base64.RawURLEncoding.EncodeToString(raw)
	m := hmac.New(sha256.New, s.ticketKey())
	m.Write([]byte(body))
	return body + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

func (s *Server) checkTicket(t string, now time.Time) (ticketClaims, error) {
	var c ticketClaims
	body, sig, ok := strings.Cut(t, ".")
	if !ok {
		return c, fmt.Errorf("%w: malformed", ErrTicket)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return c, fmt.Errorf("%w: malformed", ErrTicket)
	}
	m := hmac.New(sha256.New, s.ticketKey())
	m.Write([]byte(body))
	if !hmac.Equal(got, m.Sum(nil)) {
		return c, fmt.Errorf("%w: bad signature (made by another server, or changed)", ErrTicket)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || json.Unmarshal(raw, &c) != nil {
		return c, fmt.Errorf("%w: malformed", ErrTicket)
	}
	if now.Unix() > c.Expires {
		return c, fmt.Errorf("%w: expired at %s (ask the console for a new one)", ErrTicket, time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

// DownloadRequest is the body of POST /api/v1/downloads.
type DownloadRequest struct {
	VM    string `json:"vm"`
	Point string `json:"point"` // id, generation or latest
	FS    string `json:"fs"`
	Path  string `json:"path"`
}

// DownloadTicket is the answer of POST /api/v1/downloads: a URL to GET
// (without token) until Expires. A regular file downloads as itself
// (Range requests resume it), a directory as a tar archive.
type DownloadTicket struct {
	URL     string    `json:"url"`
	Name    string    `json:"name"` // the file name the download is saved as
	Kind    string    `json:"kind"` // file or dir
	Size    int64     `json:"size,omitempty"`
	Expires time.Time `json:"expires"`
}

func (s *Server) handleMintDownload(w http.ResponseWriter, r *http.Request) {
	var req DownloadRequest
	if err := decodeBody(w, r, &req); err != nil || req.VM == "" {
		reason := "no \"vm\""
		if err != nil {
			reason = err.Error()
		}
		writeError(w, http.StatusBadRequest, fmt.Errorf("want a JSON body {\"vm\": NAME, \"point\": ID, \"fs\": FILESYSTEM, \"path\": PATH}: %s", reason))
		return
	}
	if req.Point == "" {
		req.Point = "latest"
	}
	g, err := s.resolveGuest(r, req.VM, req.Point, req.FS, req.Path)
	if err != nil {
		browseError(w, err)
		return
	}
	defer g.release()
	out := DownloadTicket{Kind: g.entry.Kind()}
	switch {
	case g.entry.Mode.IsRegular():
		out.Name, out.Size = g.baseName(), g.entry.Size
	case g.entry.Mode.IsDir():
		out.Name = g.baseName() + ".tar"
	default:
		writeError(w, http.StatusUnprocessableEntity, fmt.Errorf("%s is a %s, not a file or directory: nothing to download", g.slashPath(), g.entry.Kind()))
		return
	}
	exp := time.Now().Add(DownloadTTL)
	id, _ := identityOf(r)
	t, err := s.signTicket(ticketClaims{VM: g.vm, Point: g.point, FS: g.fs.Name, Path: g.path, Expires: exp.Unix(), Who: id.Name})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out.URL, out.Expires = "/api/v1/download/"+t, exp.UTC().Truncate(time.Second)
	writeJSON(w, http.StatusCreated, out)
}

// isDownload reports whether r is a ticket download, which the guard lets
// through without the bearer token (its handler checks the ticket).
func isDownload(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.HasPrefix(r.URL.Path, "/api/v1/download/")
}

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	c, err := s.validTicket(r.PathValue("ticket"), time.Now()) // hardening.go: its token still valid
	if err != nil {
		s.metrics.apiRefused.WithLabelValues("ticket").Inc()
		writeError(w, http.StatusForbidden, err)
		return
	}
	g, err := s.resolveGuest(r, c.VM, c.Point, c.FS, c.Path)
	if err != nil {
		browseError(w, err)
		return
	}
	defer g.release()
	w = &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
	switch {
	case g.entry.Mode.IsRegular():
		disposition(w, g.baseName())
		w.Header().Set("Content-Type", "application/octet-stream")
		// The point never changes: the entry's identity is a strong
		// validator, so If-Range resumes only the very same file.
		w.Header().Set("ETag", fmt.Sprintf(`"%d-%d-%d-%d"`, g.gen, g.entry.Ino, g.entry.Size, g.entry.Mtime.UnixNano()))
		http.ServeContent(w, r, "", g.entry.Mtime, &fileReadSeeker{fsys: g.fsys, ino: g.entry.Ino, size: g.entry.Size})
	case g.entry.Mode.IsDir():
		disposition(w, g.baseName()+".tar")
		w.Header().Set("Content-Type", "application/x-tar")
		if r.Method == http.MethodHead {
			return
		}
		s.writeTar(r, w, g)
	default:
		writeError(w, http.StatusUnprocessableEntity, fmt.Errorf("%s is a %s: nothing to download", g.slashPath(), g.entry.Kind()))
	}
}

func disposition(w http.ResponseWriter, name string) {
	v := mime.FormatMediaType("attachment", map[string]string{"filename": name})
	if v == "" {
		v = "attachment"
	}
	w.Header().Set("Content-Disposition", v)
}

// deadlineWriter moves the connection's write deadline on with every
// write, so a long download is not cut by the server's WriteTimeout
// while a stalled client still is.
type deadlineWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	last time.Time
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.last) > time.Second {
		d.last = now
		_ = d.rc.SetWriteDeadline(now.Add(2 * time.Minute))
	}
	return d.ResponseWriter.Write(p)
}

func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// fileReadSeeker reads a guest file sequentially from any offset (for
// http.ServeContent, which answers Range requests with it).
type fileReadSeeker struct {
	fsys partinfo.Filesystem
	ino  uint64
	size int64
	off  int64
}

func (f *fileReadSeeker) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	if rem := f.size - f.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := f.fsys.ReadAt(f.ino, p, f.off)
	f.off += int64(n)
	if err == io.EOF && f.off < f.size {
		err = fmt.Errorf("read %d of %d bytes: %w", f.off, f.size, io.ErrUnexpectedEOF)
	}
	if err == nil && n == 0 {
		err = fmt.Errorf("read %d of %d bytes: %w", f.off, f.size, io.ErrNoProgress)
	}
	return n, err
}

func (f *fileReadSeeker) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += f.off
	case io.SeekEnd:
		off += f.size
	}
	if off < 0 {
		return 0, errors.New("seek before the start")
	}
	f.off = off
	return off, nil
}

// writeTar streams the directory g as a tar archive (PAX: modes, owners,
// times to the nanosecond, symlinks, hard links, FIFOs and devices). An
// entry that cannot be read is left out and named in CAIRN-ERRORS.txt at
// the end of the archive; a file that fails after its header was sent
// aborts the connection, so that a truncated archive is never taken for
// a whole one.
func (s *Server) writeTar(r *http.Request, w io.Writer, g *guestTarget) {
	ctx := r.Context()
	tw := tar.NewWriter(w)
	root := g.baseName()
	var problems []string
	links := map[uint64]string{} // inode of a file with several names -> its first name in the archive
	buf := make([]byte, 1<<20)
	var add func(ino uint64, name string, depth int) error
	add = func(ino uint64, name string, depth int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		a, err := g.fsys.Stat(ino)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			return nil
		}
		h := &tar.Header{Name: name, Mode: int64(unixPerm(a.Mode)), Uid: int(a.Uid), Gid: int(a.Gid), ModTime: a.Mtime, Format: tar.FormatPAX}
		switch {
		case a.Mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case a.Mode&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			if h.Linkname, err = g.fsys.Readlink(ino); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", name, err))
				return nil
			}
		case a.Mode.IsRegular():
			if first, ok := links[ino]; ok {
				h.Typeflag, h.Linkname = tar.TypeLink, first
			} else {
				h.Typeflag, h.Size = tar.TypeReg, a.Size
				if a.Nlink > 1 {
					links[ino] = name
				}
			}
		case a.Mode&fs.ModeNamedPipe != 0:
			h.Typeflag = tar.TypeFifo
		case a.Mode&fs.ModeDevice != 0:
			h.Typeflag = tar.TypeBlock
			if a.Mode&fs.ModeCharDevice != 0 {
				h.Typeflag = tar.TypeChar
			}
			h.Devmajor, h.Devminor = int64(unix.Major(uint64(a.Rdev))), int64(unix.Minor(uint64(a.Rdev))) // Linux dev_t
		default: // a socket: tar has no type for it
			problems = append(problems, fmt.Sprintf("%s: a socket, not archived", name))
			return nil
		}
		var ents []partinfo.DirEntry
		if a.Mode.IsDir() {
			if depth >= maxTarDepth {
				problems = append(problems, fmt.Sprintf("%s: deeper than %d directories, its entries not archived", name, maxTarDepth))
			} else if ents, err = g.fsys.ReadDir(ino); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			src := &fileReadSeeker{fsys: g.fsys, ino: ino, size: a.Size}
			if _, err := io.CopyBuffer(tw, io.LimitReader(src, a.Size), buf); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		sortEntries(ents)
		for _, de := range ents {
			if err := add(de.Ino, name+"/"+de.Name, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := add(g.entry.Ino, root, 0); err != nil {
		s.log.Warn("download of a directory cut short", "vm", g.vm, "point", g.point, "fs", g.fs.Name, "path", g.slashPath(), "error", err)
		panic(http.ErrAbortHandler) // the client sees a broken transfer, not a short archive
	}
	if len(problems) > 0 {
		text := "cairn could not archive these entries of " + g.vm + "/" + g.point + " " + g.fs.Name + ":" + g.slashPath() + "\n" + strings.Join(problems, "\n") + "\n"
		h := &tar.Header{Name: root + "/CAIRN-ERRORS.txt", Mode: 0o644, Size: int64(len(text)), ModTime: time.Now(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if tw.WriteHeader(h) == nil {
			io.WriteString(tw, text)
		}
	}
	if err := tw.Close(); err != nil {
		panic(http.ErrAbortHandler)
	}
}

// maxTarDepth bounds the directories a tar descends (a damaged
// filesystem may loop).
const maxTarDepth = 4096

func sortEntries(d []partinfo.DirEntry) {
	slices.SortFunc(d, func(a, b partinfo.DirEntry) int { return strings.Compare(a.Name, b.Name) })
}
