package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// Limits on what an import reads from its input: a changed-area list
// (--changed, --changed-file) is read only up to maxChangedBytes and may
// hold at most maxChangedAreas areas. VMware's changed block tracking
// returns a few thousand areas per disk; the caps are far above that
// and keep a wrong file (/dev/zero, a log) from taking the machine's
// memory.
const (
	maxChangedBytes = 64 << 20
	maxChangedAreas = 4 << 20
)

// areaLists is a repeatable flag whose values are kept whole: unlike
// cli.StringSliceFlag it does not split a value at commas, so
// --changed 1048576:65536,8388608:131072 is one list of two areas.
type areaLists struct{ vals []string }

func (a *areaLists) Set(v string) error { a.vals = append(a.vals, v); return nil }
func (a *areaLists) String() string     { return strings.Join(a.vals, " ") }

// Get returns the values given (for cli's Generic).
func (a *areaLists) Get() any { return a.vals }

// flagLists returns the values of an areaLists flag.
func flagLists(v any) []string {
	if a, ok := v.(*areaLists); ok && a != nil {
		return a.vals
	}
	return nil
}

// readChangedFile reads a --changed-file: at most maxChangedBytes, and
// never blocking for good: a FIFO waits for its writer (and the pipe of
// a process substitution for its end) only until ctx ends (SIGINT,
// SIGTERM).
func readChangedFile(ctx context.Context, path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%s is a directory, not a file of changed areas", path)
	}
	f, err := openCancellable(ctx, path, fi)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// Pipes and FIFOs go through the poller, so a deadline ends a read
	// that waits for a silent writer.
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	data, err := io.ReadAll(io.LimitReader(f, maxChangedBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("reading %s: %w", path, ctx.Err())
		}
		return "", err
	}
	if len(data) > maxChangedBytes {
		return "", fmt.Errorf("%s is larger than %d MiB: not a list of changed areas (VMware reports a few thousand areas per disk)", path, maxChangedBytes>>20)
	}
	return string(data), nil
}

// openCancellable opens path for reading. Opening a FIFO blocks until a
// writer opens it; that wait ends with ctx: the FIFO is then opened for
// writing here, which releases the blocked open.
func openCancellable(ctx context.Context, path string, fi os.FileInfo) (*os.File, error) {
	if fi.Mode()&os.ModeNamedPipe == 0 {
		return os.Open(path)
	}
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := os.Open(path)
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		return r.f, r.err
	case <-ctx.Done():
		// The write side opens (and so releases the reader) only once the
		// reader waits in open: try until it did.
		for {
			if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close()
			}
			select {
			case r := <-done:
				if r.f != nil {
					r.f.Close()
				}
				return nil, fmt.Errorf("waiting for a writer of FIFO %s: %w", path, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// checkPointTime refuses a --time that cannot be a capture time: before
// 1970 (a zero or default value), or more than a day in the future
// (clocks differ, but a point from next year is a typo).
func checkPointTime(t time.Time, now time.Time) error {
	switch {
	case t.Before(time.Unix(0, 0)):
		return fmt.Errorf("--time %s is before 1970: give the moment the data was captured (RFC 3339, e.g. %s), or leave --time out for now", t.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case t.After(now.Add(24 * time.Hour)):
		return fmt.Errorf("--time %s is in the future: give the moment the data was captured (RFC 3339), or leave --time out for now", t.Format(time.RFC3339))
	}
	return nil
}
