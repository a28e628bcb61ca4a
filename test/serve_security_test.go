package test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// TestServeAPISecurity runs `cairn serve` against `cairn lab` (three VMs,
// the job excluding lab-vm-3) and attacks its API as a local user and a
// browser would: a request naming the job cannot back up the VM the job
// excludes; requests without the repository's token, with a foreign
// Origin, a rebinding Host or a non-JSON body are refused; 300 requests
// for unknown VMs cost at most one vCenter login; 100 requests for one
// VM make at most two backups; thousands of half-sent requests leave
// serve's descriptors bounded and the mount readable. Every file serve
// and its backups leave in the repository is private, and cairn status,
// jobs and trigger find the token themselves.
func TestServeAPISecurity(t *testing.T) {
	testutil.RequireFUSE(t)
	testutil.RequireTools(t, "nbdkit")
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	bin := buildCairn(t)
	lb := startServeLab(t, bin, 3, "1h")
	listen, labCfg, repo := lb.listen, lb.cfg, lb.cfg.Repository
	// As an older cairn left it: world-readable. serve fixes it at start.
	filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	excl := regexp.MustCompile(`(?m)^(\s+)vcenter: lab\n`).ReplaceAll(lb.raw, []byte("${1}vcenter: lab\n${1}exclude: [lab-vm-3]\n"))
	if bytes.Equal(excl, lb.raw) {
		t.Fatalf("cannot add an exclusion to the lab's job:\n%s", lb.raw)
	}
	cfgFile := lb.writeConfig(t, excl)
	var logs serveLogBuffer
	srv, exited := serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
	base := "http://" + listen
	api := serveAPI{base: base, repo: repo}
	var pts []blockmap.Point
	serveWaitFor(t, "a point of lab-vm-1 and lab-vm-2", exited, &logs, func() bool {
		var jobs serve.JobsResponse
		if !api.getJSON("/api/v1/jobs", &jobs) {
			return false
		}
		ok := 0
		for _, r := range jobs.Runs {
			if r.State == serve.StateOK {
				ok++
			}
		}
		return ok >= 2
	})
	if !api.getJSON("/api/v1/points?vm=lab-vm-1", &pts) || len(pts) == 0 {
		t.Fatal("no point of lab-vm-1")
	}

	// Item 8: the repository (images, index, job log, serve.json, token).
	if loose, seen := looseRepoPaths(t, repo); len(loose) > 0 || seen < 15 {
		t.Errorf("%d of %d repository paths open to other users:\n%s", len(loose), seen, strings.Join(loose, "\n"))
	}
	for _, f := range []string{serve.ServeFileName, serve.TokenFileName, "jobs/jobs.jsonl"} {
		if _, err := os.Stat(filepath.Join(repo, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}

	post := func(body string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/api/v1/jobs", strings.NewReader(body))
		tok, _ := serve.ReadToken(repo)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
			} else if v == "" {
				req.Header.Del(k)
			} else {
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
	runsOf := func(vm string) []serve.RunRecord {
		var jobs serve.JobsResponse
		if !api.getJSON("/api/v1/jobs", &jobs) {
			t.Fatal("GET /api/v1/jobs")
		}
		var out []serve.RunRecord
		for _, r := range jobs.Runs {
			if r.VM == vm {
				out = append(out, r)
			}
		}
		return out
	}

	// Item 9: the job's selection holds for requests naming the job.
	if code, body := post(`{"vm":"lab-vm-3","job":"lab"}`, nil); code != http.StatusForbidden || !strings.Contains(body, "does not select") {
		t.Errorf(`POST {"vm":"lab-vm-3","job":"lab"}: %d %s; want 403`, code, body)
	}
	if code, body := post(`{"vm":"lab-vm-3"}`, nil); code != http.StatusNotFound {
		t.Errorf(`POST {"vm":"lab-vm-3"}: %d %s; want 404`, code, body)
	}
	if res := runCairn(t, nil, "--repo", repo, "trigger", "--vm", "lab-vm-3", "--job", "lab"); res.code == 0 || !strings.Contains(res.stderr, "does not select") {
		t.Errorf("cairn trigger of an excluded VM: exit %d, %s", res.code, res.stderr)
	}

	// Item 10: browsers and other users.
	_, port, _ := net.SplitHostPort(listen)
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"no token", map[string]string{"Authorization": ""}, 401},
		{"text/plain", map[string]string{"Content-Type": "text/plain"}, 415},
		{"form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"foreign Origin", map[string]string{"Origin": "http://evil.example"}, 403},
		{"rebinding Host", map[string]string{"Host": "evil.example:" + port}, 421},
	} {
		if code, body := post(`{"vm":"lab-vm-1"}`, tc.hdr); code != tc.want {
			t.Errorf("%s: POST %d, want %d: %s", tc.name, code, tc.want, body)
		}
	}
	if r := runsOf("lab-vm-1"); len(r) != 1 {
		t.Errorf("refused requests started runs of lab-vm-1: %+v", r)
	}
	if resp, err := http.Get(base + "/api/v1/status"); err != nil || resp.StatusCode != 401 {
		t.Errorf("GET status without the token: %v %v", resp.StatusCode, err)
	}

	// Item 11: floods.
	logins := func() float64 {
		resp, err := api.get("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^cairn_vcenter_logins_total\{[^}]*\} (\S+)$`).FindSubmatch(b)
		if m == nil {
			t.Errorf("no cairn_vcenter_logins_total in /metrics")
			return 0
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	before := logins()
	for i := range 300 {
		if code, body := post(fmt.Sprintf(`{"vm":"unknown-%d"}`, i), nil); code != 404 {
			t.Fatalf("POST for unknown VM %d: %d %s", i, code, body)
		}
	}
	n := logins() - before
	if n > 1 {
		t.Errorf("300 requests for unknown VMs made %v vCenter logins, want at most 1", n)
	}
	t.Logf("300 requests for unknown VMs: %v vCenter logins", n)
	ids := map[string]bool{}
	for range 100 {
		code, body := post(`{"vm":"lab-vm-2"}`, nil)
		if code != 202 {
			t.Fatalf("POST lab-vm-2: %d %s", code, body)
		}
		var acc struct{ ID string }
		json.Unmarshal([]byte(body), &acc)
		ids[acc.ID] = true
	}
	if len(ids) > 2 {
		t.Errorf("100 requests for lab-vm-2 made %d backups, want at most 2", len(ids))
	}
	t.Logf("100 requests for lab-vm-2: %d backups", len(ids))

	// Half-sent requests: serve's descriptors stay bounded, the mount
	// answers meanwhile, the API answers once they are gone.
	pid := srv.Process.Pid
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	fdsBefore := fds()
	var conns []net.Conn
	for range 3000 {
		c, err := net.DialTimeout("tcp", listen, 2*time.Second)
		if err != nil {
			break
		}
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
		conns = append(conns, c)
	}
	if len(conns) < 2*serve.MaxConns {
		t.Errorf("only %d connections made", len(conns))
	}
	time.Sleep(500 * time.Millisecond)
	grew := fds() - fdsBefore
	if grew > serve.MaxConns+32 {
		t.Errorf("%d half-sent requests: serve holds %d more descriptors, want at most %d", len(conns), grew, serve.MaxConns+32)
	}
	t.Logf("%d half-sent requests: serve holds %d more descriptors (%d before)", len(conns), grew, fdsBefore)
	info := filepath.Join(labCfg.Mount, "lab-vm-1", pts[0].ID, "info.json")
	if b, err := os.ReadFile(info); err != nil || !bytes.Contains(b, []byte(pts[0].ID)) {
		t.Errorf("the mount during the flood: %v", err)
	}
	for _, c := range conns {
		c.Close()
	}
	serveWaitFor(t, "healthz after the flood", exited, &logs, func() bool {
		r, err := http.Get(base + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})
	if strings.Contains(logs.String(), "too many open files") {
		t.Errorf("serve ran out of descriptors:\n%s", logs.String())
	}

	// The CLI reads the token from the repository.
	if out := mustCairn(t, "--repo", repo, "status"); !strings.Contains(out, "cairn serve") || !strings.Contains(out, "lab-vm-1") {
		t.Errorf("cairn status:\n%s", out)
	}
	if out := mustCairn(t, "--repo", repo, "jobs", "--last", "3"); !strings.Contains(out, "runs of cairn serve") {
		t.Errorf("cairn jobs:\n%s", out)
	}
	// Without the token (another user, or --token-file of a wrong file).
	wrong := filepath.Join(t.TempDir(), "wrong-token")
	os.WriteFile(wrong, []byte(strings.Repeat("a", 64)), 0o600)
	if res := runCairn(t, nil, "--repo", repo, "jobs", "--token-file", wrong, "--server", base); res.code == 0 || !strings.Contains(res.stderr, "401") {
		t.Errorf("cairn jobs with a wrong token: exit %d, %s", res.code, res.stderr)
	}
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-exited
	if loose, _ := looseRepoPaths(t, repo); len(loose) > 0 {
		t.Errorf("after serve stopped, open to other users:\n%s", strings.Join(loose, "\n"))
	}
}

// TestServeTLS: `cairn serve` refuses to listen beyond loopback without
// TLS; with api tls_cert/tls_key it serves HTTPS only, and cairn status
// reaches it through the certificate recorded in serve.json and the
// repository's token.
func TestServeTLS(t *testing.T) {
	bin := buildCairn(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	mustCairn(t, "--repo", repo, "init")
	creds := filepath.Join(dir, "credentials")
	os.WriteFile(creds, []byte("u\np\n"), 0o600)
	_, port, _ := net.SplitHostPort(serveFreeAddr(t))
	cfg := fmt.Sprintf("repository: %s\nlisten: 0.0.0.0:%s\nvcenters:\n  - name: vc\n    url: https://127.0.0.1:1/sdk\n    credentials: %s\n    insecure: true\njobs:\n  - name: j\n    vcenter: vc\n    vms: [a]\n    schedule: \"0 0 1 1 *\"\n", repo, port, creds)
	cfgFile := filepath.Join(dir, "cairn.yaml")
	os.WriteFile(cfgFile, []byte(cfg), 0o600)
	if res := runCairn(t, nil, "serve", "--config", cfgFile); res.code == 0 || !strings.Contains(res.stderr, "tls_cert and tls_key") {
		t.Fatalf("serve on 0.0.0.0 without TLS: exit %d, %s", res.code, res.stderr)
	}
	loop := filepath.Join(dir, "loopback.yaml")
	os.WriteFile(loop, []byte(strings.Replace(cfg, "listen: 0.0.0.0:", "listen: 127.0.0.1:", 1)), 0o600)
	if res := runCairn(t, nil, "serve", "--config", loop, "--listen", "0.0.0.0:"+port); res.code == 0 || !strings.Contains(res.stderr, "tls_cert") {
		t.Fatalf("serve --listen 0.0.0.0 without TLS: exit %d, %s", res.code, res.stderr)
	}
	// Nor does the CLI send the token over plain HTTP beyond loopback.
	if res := runCairn(t, nil, "--repo", repo, "status", "--server", "http://192.0.2.1:8480"); res.code == 0 || !strings.Contains(res.stderr, "clear text") {
		t.Errorf("cairn status --server http://192.0.2.1: exit %d, %s", res.code, res.stderr)
	}
	testutil.WriteTLSCerts(t, dir)
	cert, key := filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem")
	cfg = strings.Replace(cfg, "vcenters:", fmt.Sprintf("api:\n  tls_cert: %s\n  tls_key: %s\nvcenters:", cert, key), 1)
	os.WriteFile(cfgFile, []byte(cfg), 0o600)
	var logs serveLogBuffer
	_, exited := serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
	serveWaitFor(t, "serve.json", exited, &logs, func() bool {
		_, err := serve.ReadServeFile(repo)
		return err == nil
	})
	base := "127.0.0.1:" + port
	// Plain HTTP gets no API.
	if resp, err := http.Get("http://" + base + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP answered")
	}
	tok, err := serve.ReadToken(repo)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pemData, _ := os.ReadFile(filepath.Join(dir, "ca-cert.pem"))
	pool.AppendCertsFromPEM(pemData)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", "https://localhost:"+port+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS with the token: %v %v", resp, err)
	}
	resp.Body.Close()
	if out := mustCairn(t, "--repo", repo, "status"); !strings.Contains(out, "https://127.0.0.1:"+port) {
		t.Errorf("cairn status over HTTPS:\n%s", out)
	}
	// A client pinned to the certificate refuses another server's.
	otherDir := t.TempDir()
	testutil.WriteTLSCerts(t, otherDir)
	other := filepath.Join(otherDir, "server-cert.pem")
	sf, _ := serve.ReadServeFile(repo)
	sf.TLSCert = other
	data, _ := json.Marshal(sf)
	os.WriteFile(filepath.Join(repo, serve.ServeFileName), data, 0o600)
	if res := runCairn(t, nil, "--repo", repo, "status"); !strings.Contains(res.stderr, "certificate") {
		t.Errorf("cairn status with a different pinned certificate: exit %d, %s%s", res.code, res.stdout, res.stderr)
	}
}
