package serve

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/cairnbackup/cairn/backupd/guestfind"
)

// The files endpoint answers a directory a page at a time, so an answer
// stays small however large the guest's directory (a mail spool, a
// cache: 500,000 entries).
const (
	// DefaultFilesLimit is the page of GET .../files without limit=.
	DefaultFilesLimit = 1000
	// MaxFilesLimit is the largest page it answers (a larger limit= is
	// lowered to it).
	MaxFilesLimit = 10000
	// maxFilterLen bounds filter= and after= (a guest name is at most 255
	// bytes on every filesystem cairn reads).
	maxFilterLen = 1024
)

// dirQueryOf reads limit=, after= and filter= of a files request.
func dirQueryOf(q url.Values) (guestfind.DirQuery, error) {
	dq := guestfind.DirQuery{Limit: DefaultFilesLimit, After: q.Get("after"), Filter: q.Get("filter")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return dq, fmt.Errorf("limit=%q: give a number of entries from 1 to %d", v, MaxFilesLimit)
		}
		dq.Limit = min(n, MaxFilesLimit)
	}
	if len(dq.After) > maxFilterLen || len(dq.Filter) > maxFilterLen {
		return dq, fmt.Errorf("after= or filter= is longer than %d bytes: give a part of a name", maxFilterLen)
	}
	return dq, nil
}

// setPage fills out's entries and paging fields from one page.
func setPage(out *FilesResponse, pg guestfind.DirPage, dq guestfind.DirQuery) {
	out.Entries = make([]FileEntry, 0, len(pg.Entries))
	for _, de := range pg.Entries {
		out.Entries = append(out.Entries, fileEntry(de.Name, de.Entry, de.Err))
	}
	out.Total, out.Matched, out.Offset, out.Limit, out.Filter = pg.Total, pg.Matched, pg.Offset, dq.Limit, dq.Filter
	if pg.More && len(pg.Entries) > 0 {
		out.Next = pg.Entries[len(pg.Entries)-1].Name
	}
}
