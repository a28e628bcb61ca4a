package guestfind

import (
	"errors"
	"fmt"
	"strings"
)

// ErrPathNotFound is matched by a *NotFoundError: the path exists in no
// point (in no selected filesystem of any point).
var ErrPathNotFound = errors.New("path not found in any recovery point")

// NotFoundError says a path was in no selected filesystem of any point
// walked. It matches ErrPathNotFound.
type NotFoundError struct {
	VM     string
	Path   string
	Points int      // points walked
	FS     []string // filesystems looked in (every point's, without repeats)
}

func (e *NotFoundError) Error() string {
	where := "no filesystem could be read"
	if len(e.FS) > 0 {
		where = "looked in " + strings.Join(e.FS, ", ")
	}
	return fmt.Sprintf("VM %s: /%s: %v (%d points; %s)", e.VM, e.Path, ErrPathNotFound, e.Points, where)
}

func (e *NotFoundError) Unwrap() error { return ErrPathNotFound }

// PointError says what could not be read in one point: one filesystem
// (FS set), or the whole point (FS empty: a disk could not be opened).
// It never stops a history or a search; the other points are read.
type PointError struct {
	Point string
	FS    string
	Err   error
}

func (e *PointError) Error() string {
	if e.FS == "" {
		return fmt.Sprintf("point %s: %v", e.Point, e.Err)
	}
	return fmt.Sprintf("point %s: filesystem %s: %v", e.Point, e.FS, e.Err)
}

func (e *PointError) Unwrap() error { return e.Err }
