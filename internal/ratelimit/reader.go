package ratelimit

import (
	"context"
	"io"
	"time"
)

// Reader passes R's bytes through limiter L: each Read takes at most a
// Chunk of the rate in force from R and returns it only once L lets the
// bytes pass. A request body wrapped so goes out at the rate; a response
// body read so is read at the rate (TCP then slows the sender).
type Reader struct {
	R   io.Reader
	L   *Limiter
	Ctx context.Context
	// Before, when set, is called with each wait before it starts.
	Before func(time.Duration)
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if c := Chunk(r.L.Now()); len(p) > c {
		p = p[:c]
	}
	n, err := r.R.Read(p)
	if n > 0 {
		if werr := r.L.Wait(r.Ctx, n, r.Before); werr != nil {
			return 0, werr
		}
	}
	return n, err
}
