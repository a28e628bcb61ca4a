package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
)

// apiServer is a Server running in the test with its real HTTP listener.
type apiServer struct {
	s     *Server
	repo  string
	base  string // http://127.0.0.1:PORT
	token string
}

// startAPIServer runs cfgText (with %[1]s the repository, %[2]s the
// vCenter URL, %[3]s its credentials file, %[4]s its thumbprint) until
// the test ends; tune adjusts the server before it runs.
func startAPIServer(t *testing.T, sim *esxsim.Sim, cfgText string, tune func(*Server)) *apiServer {
	t.Helper()
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := blockmap.Init(context.Background(), repo, blockmap.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte(sim.User+"\n"+sim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(cfgText, repo, sim.URL, creds, sim.Thumbprint)))
	if err != nil {
		t.Fatal(err)
	}
	return runTestServer(t, repo, cfg, tune)
}

// runTestServer runs cfg (on the initialized repository repo) until the
// test ends and waits until it serves; tune adjusts the server first.
func runTestServer(t *testing.T, repo string, cfg *Config, tune func(*Server)) *apiServer {
	t.Helper()
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if f, err := ReadServeFile(repo); err == nil {
			tok, err := ReadToken(repo)
			if err != nil {
				t.Fatal(err)
			}
			return &apiServer{s: s, repo: repo, base: "http://" + f.Listen, token: tok}
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start")
		}
	}
}

// do sends one request; hdr holds extra headers ("Authorization" is the
// server's token unless hdr sets it, "-" for none).
func (a *apiServer) do(t *testing.T, method, path, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		switch {
		case k == "Host":
			req.Host = v
		case v == "-":
			req.Header.Del(k)
		default:
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the sum of the samples of name (any labels) in /metrics.
func (a *apiServer) metric(t *testing.T, name string) float64 {
	t.Helper()
	code, body := a.do(t, http.MethodGet, "/metrics", "", nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	sum := 0.0
	re := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		sum += v
	}
	return sum
}

// simConfigHeader starts a test config for startAPIServer: the
// repository, a listener on a free loopback port and the esxsim vCenter
// "sim" (the %[1]s..%[4]s verbs). A test appends its jobs: section.
const simConfigHeader = `repository: %[1]s
listen: 127.0.0.1:0
timezone: UTC
vcenters:
  - name: sim
    url: %[2]s
    credentials: %[3]s
    thumbprint: %[4]q
`

// apiConfig: two jobs on one vCenter, neither scheduled during a test; a
// backup's NBD server never starts, so requested backups stay in
// progress (queued or running) while the test looks at them.
const apiConfig = simConfigHeader + `jobs:
  - name: web
    vcenter: sim
    vms: ["web-*"]
    exclude: ["web-3"]
    schedule: "0 0 1 1 *"
    transports: [nbd]
    nbd_command: sleep 600 {socket}
    retries: 0
  - name: gold
    vcenter: sim
    tags: ["backup:gold"]
    schedule: "0 0 1 1 *"
    transports: [nbd]
    nbd_command: sleep 600 {socket}
    retries: 0
`

func apiSim(t *testing.T, extra ...esxsim.VMSpec) *esxsim.Sim {
	disk := []esxsim.DiskSpec{{Size: 1 << 20}}
	vms := []esxsim.VMSpec{
		{Name: "web-1", Disks: disk}, {Name: "web-2", Disks: disk}, {Name: "web-3", Disks: disk},
		{Name: "db-1", Tags: []string{"backup:gold"}, Disks: disk},
	}
	for _, v := range extra {
		v.Disks = disk
		vms = append(vms, v)
	}
	return esxsimtest.Start(t, esxsim.Options{VMs: vms})
}

// TestAPIGuards: the API answers only requests with the repository's
// token, JSON POSTs, no foreign Origin and a Host naming this machine;
// /healthz needs nothing; the token file is private.
func TestAPIGuards(t *testing.T) {
	a := startAPIServer(t, apiSim(t), apiConfig, nil)
	fi, err := os.Stat(filepath.Join(a.repo, TokenFileName))
	if err != nil || fi.Mode().Perm() != 0o600 || len(a.token) != 64 {
		t.Fatalf("token file: %v, mode %v, token length %d", err, fi.Mode().Perm(), len(a.token))
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(a.base, "http://"))
	body := `{"vm":"web-1"}`
	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		hdr          map[string]string
		want         int
	}{
		{"healthz without token", "GET", "/healthz", "", map[string]string{"Authorization": "-"}, 200},
		{"status without token", "GET", "/api/v1/status", "", map[string]string{"Authorization": "-"}, 401},
		{"metrics without token", "GET", "/metrics", "", map[string]string{"Authorization": "-"}, 401},
		{"wrong token", "GET", "/api/v1/vms", "", map[string]string{"Authorization": "Bearer " + strings.Repeat("0", 64)}, 401},
		{"basic auth", "GET", "/api/v1/vms", "", map[string]string{"Authorization": "Basic " + a.token}, 401},
		{"POST without token", "POST", "/api/v1/jobs", body, map[string]string{"Authorization": "-"}, 401},
		{"text/plain POST", "POST", "/api/v1/jobs", body, map[string]string{"Content-Type": "text/plain"}, 415},
		{"form POST", "POST", "/api/v1/jobs", "vm=web-1", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"POST without type", "POST", "/api/v1/verify", "{}", map[string]string{"Content-Type": "-"}, 415},
		{"foreign Origin", "POST", "/api/v1/jobs", body, map[string]string{"Origin": "http://evil.example"}, 403},
		{"foreign Origin GET", "GET", "/api/v1/status", "", map[string]string{"Origin": "http://evil.example"}, 403},
		{"null Origin", "POST", "/api/v1/jobs", body, map[string]string{"Origin": "null"}, 403},
		{"cross-site fetch", "GET", "/api/v1/status", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"rebinding Host", "GET", "/api/v1/status", "", map[string]string{"Host": "evil.example:" + port}, 421},
		{"rebinding Host healthz", "GET", "/healthz", "", map[string]string{"Host": "evil.example"}, 421},
		{"localhost Host", "GET", "/api/v1/status", "", map[string]string{"Host": "localhost:" + port}, 200},
		{"same Origin", "GET", "/api/v1/status", "", map[string]string{"Origin": a.base}, 200},
		{"token", "GET", "/api/v1/vms", "", nil, 200},
	} {
		if code, resp := a.do(t, tc.method, tc.path, tc.body, tc.hdr); code != tc.want {
			t.Errorf("%s: %s %s: status %d, want %d: %s", tc.name, tc.method, tc.path, code, tc.want, resp)
		}
	}
	if runs := a.s.Runs(); len(runs) != 0 {
		t.Errorf("refused requests started runs: %+v", runs)
	}
	if n := a.metric(t, "cairn_api_refused_total"); n < 13 {
		t.Errorf("cairn_api_refused_total %v, want >= 13", n)
	}
}

// TestAPISelection: a request runs only what the configuration allows:
// a VM the named job excludes or does not select is refused (403) and no
// backup starts; without a job, a VM no job selects is 404; a VM the job
// selects (by name or tag) is accepted.
func TestAPISelection(t *testing.T) {
	a := startAPIServer(t, apiSim(t), apiConfig, nil)
	for _, tc := range []struct {
		body string
		want int
		job  string
	}{
		{`{"vm":"web-3","job":"web"}`, 403, ""},
		{`{"vm":"db-1","job":"web"}`, 403, ""},
		{`{"vm":"web-1","job":"gold"}`, 403, ""},
		{`{"vm":"web-3"}`, 404, ""},
		{`{"vm":"web-1","job":"nosuch"}`, 404, ""},
		{`{"vm":"web-1","job":"web"}`, 202, "web"},
		{`{"vm":"db-1"}`, 202, "gold"},
	} {
		code, resp := a.do(t, "POST", "/api/v1/jobs", tc.body, nil)
		if code != tc.want {
			t.Errorf("POST %s: %d, want %d: %s", tc.body, code, tc.want, resp)
			continue
		}
		if code == 202 && !strings.Contains(resp, `"job": "`+tc.job+`"`) {
			t.Errorf("POST %s ran with the wrong job: %s", tc.body, resp)
		}
	}
	for _, r := range a.s.Runs() {
		if r.VM != "web-1" && r.VM != "db-1" {
			t.Errorf("a refused request started a run: %+v", r)
		}
	}
}

// TestAPIFloods: 300 requests for unknown VMs cost at most one vCenter
// login per job; 100 requests for one VM make at most two backups (the
// running one and one queued); new requests beyond the rate and the
// queue cap are refused with 429.
func TestAPIFloods(t *testing.T) {
	var extra []esxsim.VMSpec
	for i := range postBurst + 4 {
		extra = append(extra, esxsim.VMSpec{Name: fmt.Sprintf("web-x%d", i)})
	}
	a := startAPIServer(t, apiSim(t, extra...), apiConfig, nil)
	for i := range 300 {
		if code, resp := a.do(t, "POST", "/api/v1/jobs", fmt.Sprintf(`{"vm":"nosuch-%d"}`, i), nil); code != 404 {
			t.Fatalf("POST for unknown VM %d: %d %s", i, code, resp)
		}
	}
	if n := a.metric(t, "cairn_vcenter_logins_total"); n < 1 || n > 3 {
		t.Errorf("300 requests for unknown VMs: %v vCenter logins, want 1 to 3 (the check at start, one per job)", n)
	}
	ids := map[string]bool{}
	for range 100 {
		code, resp := a.do(t, "POST", "/api/v1/jobs", `{"vm":"web-1"}`, nil)
		if code != 202 {
			t.Fatalf("POST web-1: %d %s", code, resp)
		}
		var acc struct{ ID string }
		json.Unmarshal([]byte(resp), &acc)
		ids[acc.ID] = true
	}
	runs := 0
	for _, r := range a.s.Runs() {
		if r.VM == "web-1" {
			runs++
			if !ids[r.ID] {
				t.Errorf("run %s of web-1 was not answered to any request", r.ID)
			}
		}
	}
	if runs < 1 || runs > 2 || len(ids) != runs {
		t.Errorf("100 requests for web-1: %d runs, %d ids answered; want 1 or 2", runs, len(ids))
	}
	// Distinct VMs: the POST rate limit (a burst of postBurst) refuses
	// the rest with 429 and Retry-After.
	limited := 0
	for i := range postBurst + 4 {
		code, resp := a.do(t, "POST", "/api/v1/jobs", fmt.Sprintf(`{"vm":"web-x%d"}`, i), nil)
		if code == http.StatusTooManyRequests {
			limited++
			continue
		}
		if code != 202 {
			t.Errorf("POST web-x%d: %d %s", i, code, resp)
		}
	}
	if limited == 0 {
		t.Errorf("no request refused by the rate limit")
	}
}

// TestAPIQueueCap: with the rate limit out of the way, at most
// MaxQueuedRequests requested backups wait at once.
func TestAPIQueueCap(t *testing.T) {
	var extra []esxsim.VMSpec
	for i := range MaxQueuedRequests + 4 {
		extra = append(extra, esxsim.VMSpec{Name: fmt.Sprintf("web-q%02d", i)})
	}
	// parallelism 1: one backup runs, the others wait in the queue.
	cfg := strings.Replace(apiConfig, "timezone: UTC\n", "timezone: UTC\nparallelism:\n  vms: 1\n", 1)
	a := startAPIServer(t, apiSim(t, extra...), cfg, func(s *Server) { s.posts = newRateLimiter(1000, 1000) })
	accepted, full := 0, 0
	for i := range MaxQueuedRequests + 4 {
		code, resp := a.do(t, "POST", "/api/v1/jobs", fmt.Sprintf(`{"vm":"web-q%02d"}`, i), nil)
		switch code {
		case 202:
			accepted++
		case 429:
			full++
			if !strings.Contains(resp, "waiting already") {
				t.Errorf("429 without the reason: %s", resp)
			}
		default:
			t.Errorf("POST web-q%02d: %d %s", i, code, resp)
		}
	}
	if full == 0 || accepted > MaxQueuedRequests+1 {
		t.Errorf("%d accepted, %d refused as queue full; want at most %d accepted", accepted, full, MaxQueuedRequests+1)
	}
}

// TestAPISlowClients: thousands of connections that never finish their
// request do not take the server's descriptors: the API holds at most
// MaxConns of them, and once they are gone it answers again.
func TestAPISlowClients(t *testing.T) {
	a := startAPIServer(t, apiSim(t), apiConfig, nil)
	addr := strings.TrimPrefix(a.base, "http://")
	fdsBefore := openFDs(t)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2000 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break // the backlog is full: the point is made
		}
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n") // never ends
		conns = append(conns, c)
	}
	if len(conns) < MaxConns*2 {
		t.Fatalf("only %d connections made", len(conns))
	}
	time.Sleep(200 * time.Millisecond) // let the server accept what it will
	// The test process holds one descriptor per client connection; the
	// server (same process) at most MaxConns more.
	if grew := openFDs(t) - fdsBefore - len(conns); grew > MaxConns+16 {
		t.Errorf("%d half-sent requests: the server holds %d descriptors for them, want at most %d", len(conns), grew, MaxConns+16)
	}
	// The server cut the accepted ones off at ReadHeaderTimeout: their
	// reads end (EOF or a 408 answer), not hang.
	conns[0].SetReadDeadline(time.Now().Add(60 * time.Second))
	if line, err := bufio.NewReader(conns[0]).ReadString('\n'); err == nil && !strings.Contains(line, "408") {
		t.Errorf("a half-sent request got %q", line)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("a half-sent request was never cut off")
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(a.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz does not answer after the slow clients left: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}
