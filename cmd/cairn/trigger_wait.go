package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// exitCancelled is cairn trigger --wait's exit when no backup failed but
// one or more were cancelled by the server stopping (a failed one exits
// 1): a script may simply trigger again once serve runs.
const exitCancelled = 3

// triggerEnded is what cairn trigger --wait prints for a run it waits
// for, and whether the run has ended: ok, failed, or cancelled (the
// server stopped before the backup ended; its next run backs the VM up).
func triggerEnded(r serve.RunRecord) (line string, ended bool) {
	switch r.State {
	case serve.StateOK:
		return fmt.Sprintf("%s: point %s (read %s, stored %s)", r.VM, r.Point, bytesize.IEC(r.BytesRead), bytesize.IEC(r.BytesWritten)), true
	case serve.StateFailed:
		return fmt.Sprintf("%s: FAILED: %s", r.VM, oneLine(r.Error)), true
	case serve.StateSkipped: // by a pre hook of the job: no failure
		return fmt.Sprintf("%s: skipped: %s", r.VM, oneLine(r.Error)), true
	case serve.StateCancelled:
		return fmt.Sprintf("%s: CANCELLED: the server stopped before the backup ended (%s); its next run backs the VM up, or trigger it again", r.VM, oneLine(r.Error)), true
	}
	return "", false
}

// triggerExit is cairn trigger --wait's exit: 1 when a backup failed,
// exitCancelled when none failed but some were cancelled (none of them
// made a point), naming how many of each.
func triggerExit(failed, cancelled int) error {
	switch {
	case failed > 0 && cancelled > 0:
		return cli.Exit(fmt.Sprintf("%d backups failed, %d cancelled by the server stopping", failed, cancelled), 1)
	case failed > 0:
		return cli.Exit(fmt.Sprintf("%d backups failed", failed), 1)
	case cancelled > 0:
		return cli.Exit(fmt.Sprintf("%d backups cancelled by the server stopping (no point made); trigger them again once cairn serve runs", cancelled), exitCancelled)
	}
	return nil
}

// errNoRunWait is a server without GET /api/v1/jobs/wait (older cairn).
var errNoRunWait = errors.New("the server has no GET /api/v1/jobs/wait")

// waitRuns waits for the runs of ids (run id -> VM) to end, printing each
// one's end as it comes, and returns cairn trigger --wait's exit. It asks
// GET /api/v1/jobs/wait, which a stopping server answers once every run
// has ended, so cancelled runs are told too; a server without it is
// polled through GET /api/v1/jobs.
func waitRuns(ctx context.Context, srv *serverClient, ids map[string]string) error {
	failed, cancelled := 0, 0
	ended := func(r serve.RunRecord) {
		line, done := triggerEnded(r)
		if _, ok := ids[r.ID]; !ok || !done {
			return
		}
		delete(ids, r.ID)
		fmt.Println(line)
		switch r.State {
		case serve.StateFailed:
			failed++
		case serve.StateCancelled:
			cancelled++
		}
	}
	longPoll := true
	for len(ids) > 0 {
		var runs []serve.RunRecord
		var err error
		if longPoll {
			runs, err = srv.runWait(ctx, ids)
			if errors.Is(err, errNoRunWait) {
				longPoll = false
				continue
			}
		} else {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			var jr serve.JobsResponse
			err = srv.get(ctx, "/api/v1/jobs", &jr)
			runs = jr.Runs
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			vms := make([]string, 0, len(ids))
			for _, vm := range ids {
				vms = append(vms, vm)
			}
			sort.Strings(vms)
			return fmt.Errorf("trigger: lost contact with cairn serve before the backups of %s ended, so how they ended is not known here (cairn jobs --history shows it): %w",
				strings.Join(vms, ", "), err)
		}
		for _, r := range runs {
			ended(r)
		}
	}
	return triggerExit(failed, cancelled)
}

// runWait asks GET /api/v1/jobs/wait about the runs of ids: it answers
// when one has ended (every one, while the server stops) or after
// serve.MaxRunWait.
func (s *serverClient) runWait(ctx context.Context, ids map[string]string) ([]serve.RunRecord, error) {
	q := url.Values{"timeout": {serve.MaxRunWait.String()}}
	for id := range ids {
		q.Add("id", id)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/api/v1/jobs/wait?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	s.authorize(req)
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cairn serve at %s: %w", s.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("cairn serve at %s: %w", s.base, err)
	}
	var jr struct {
		serve.JobsResponse
		Error string `json:"error"`
	}
	jsonErr := json.Unmarshal(body, &jr)
	switch {
	case resp.StatusCode == http.StatusOK && jsonErr == nil:
		return jr.Runs, nil
	case resp.StatusCode == http.StatusNotFound && !strings.HasPrefix(jr.Error, "no run "):
		fmt.Fprintln(os.Stderr, "cairn serve at "+s.base+" is older than this cairn: polling its runs")
		return nil, errNoRunWait
	case jr.Error != "":
		return nil, fmt.Errorf("cairn serve at %s: %s", s.base, jr.Error)
	}
	return nil, fmt.Errorf("cairn serve at %s: %s: %s", s.base, resp.Status, strings.TrimSpace(string(body)))
}
