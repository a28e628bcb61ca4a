package serve

import (
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// RemotePoints is the body of GET /api/v1/remotes/NAME/points and the
// output of `cairn points --remote NAME --json`: one shape for both.
type RemotePoints struct {
	Remote string           `json:"remote"`
	Points []blockmap.Point `json:"points"`
	// Unreadable lists the manifests that cannot be read (damaged, or
	// written with another key); their points are not in Points.
	Unreadable []remote.BadObject `json:"unreadable"`
	// Bad is Unreadable under the API's first name for it (docs/serve.md
	// documented "bad"), kept for callers that read it.
	Bad []remote.BadObject `json:"bad"`
}

// NewRemotePoints builds the body for a remote's points and unreadable
// manifests; empty lists are [] rather than null.
func NewRemotePoints(name string, pts []blockmap.Point, bad []remote.BadObject) RemotePoints {
	if pts == nil {
		pts = []blockmap.Point{}
	}
	if bad == nil {
		bad = []remote.BadObject{}
	}
	return RemotePoints{Remote: name, Points: pts, Unreadable: bad, Bad: bad}
}
