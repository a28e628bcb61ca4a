package serve

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
)

// TestRunWait: GET /api/v1/jobs/wait answers with the named runs when one
// has ended, or after its timeout with them still going; an unknown run
// is a 404 naming it, and a request without ?id= a 400.
func TestRunWait(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("cairn.yaml", []byte("repository: "+repo+"\nlisten: 127.0.0.1:0\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := runTestServer(t, repo, cfg, nil)
	r1 := a.s.newRun("nightly", "web-1", "api")
	r2 := a.s.newRun("nightly", "web-2", "api")
	runs := func(body string) []RunRecord {
		t.Helper()
		var jr JobsResponse
		if err := json.Unmarshal([]byte(body), &jr); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return jr.Runs
	}

	code, body := a.do(t, "GET", "/api/v1/jobs/wait?id="+r1.ID+"&id="+r2.ID+"&timeout=100ms", "", nil)
	if got := runs(body); code != http.StatusOK || len(got) != 2 || got[0].State != StateQueued || got[1].State != StateQueued {
		t.Errorf("wait on two queued runs (timeout): %d %s", code, body)
	}

	go func() {
		time.Sleep(200 * time.Millisecond)
		a.s.finish(r2, time.Now(), nil)
	}()
	code, body = a.do(t, "GET", "/api/v1/jobs/wait?id="+r1.ID+"&id="+r2.ID+"&timeout=10s", "", nil)
	if got := runs(body); code != http.StatusOK || len(got) != 2 || got[0].State != StateQueued || got[1].State != StateOK {
		t.Errorf("wait until one run ends: %d %s", code, body)
	}

	code, body = a.do(t, "GET", "/api/v1/jobs/wait?id=no-such-run", "", nil)
	if code != http.StatusNotFound || !strings.Contains(body, "no run no-such-run") {
		t.Errorf("wait on an unknown run: %d %s", code, body)
	}
	code, body = a.do(t, "GET", "/api/v1/jobs/wait", "", nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "?id=RUN") {
		t.Errorf("wait without ids: %d %s", code, body)
	}
	code, body = a.do(t, "GET", "/api/v1/jobs/wait?id="+r1.ID+"&timeout=soon", "", nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "soon") {
		t.Errorf("wait with a bad timeout: %d %s", code, body)
	}
}
