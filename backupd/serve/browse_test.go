package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// browseFixture is a repository with VM "web-1" whose one point has disk
// sda: an MBR disk whose p1 (1 MiB in) is an ext4 filesystem made by
// mkfs.ext4 -d from src, a real tree: modes, owners, old mtimes, a
// symlink, a hard link, a 3 MiB file with a hole, a name with spaces
// and UTF-8.
type browseFixture struct {
	repo, src string
	point     blockmap.Point
	big       []byte // /data/big.bin
}

func buildBrowseFixture(t *testing.T) browseFixture {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, append(lvmfixture.Required, "mkfs.ext4", "tar")...)
	dir := t.TempDir()
	f := browseFixture{repo: filepath.Join(dir, "repo"), src: filepath.Join(dir, "src")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	old := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	write := func(rel string, data []byte, mode os.FileMode, uid int) {
		t.Helper()
		p := filepath.Join(f.src, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, mode))
		must(os.Lchown(p, uid, uid)) // before the chmod: chown clears setuid
		must(os.Chmod(p, mode))
		must(os.Chtimes(p, old, old))
	}
	rng := rand.New(rand.NewPCG(3, 9))
	f.big = make([]byte, 3<<20)
	for i := range f.big {
		if i < 1<<20 || i >= 2<<20 { // the middle MiB stays a hole
			f.big[i] = byte(rng.Uint32())
		}
	}
	write("etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644, 0)
	write("etc/shadow", []byte("root:*:20000:0:99999:7:::\n"), 0o640, 0)
	write("data/big.bin", f.big, 0o600, 1000)
	write("data/sub/notes café.txt", []byte("notes with a space and UTF-8\n"), 0o664, 1000)
	write("data/sub/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755|os.ModeSetuid, 0)
	must(os.Link(filepath.Join(f.src, "data/sub/run.sh"), filepath.Join(f.src, "data/sub/run-link.sh")))
	must(os.Symlink("../big.bin", filepath.Join(f.src, "data/sub/big-link")))
	must(os.Mkdir(filepath.Join(f.src, "data/empty"), 0o750))
	must(unix.Mkfifo(filepath.Join(f.src, "data/sub/pipe"), 0o620))
	must(unix.Mknod(filepath.Join(f.src, "data/sub/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	for _, d := range []string{"data/sub", "data/empty", "data", "etc"} {
		must(os.Chtimes(filepath.Join(f.src, d), old, old))
	}
	fsImg := filepath.Join(dir, "fs.img")
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-I", "256", "-d", f.src, fsImg, "16M").CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	fsBytes, err := os.ReadFile(fsImg)
	must(err)
	disk := make([]byte, 18<<20)
	copy(disk[1<<20:], fsBytes)
	e := disk[446:462]
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], uint32(len(fsBytes)/512))
	disk[510], disk[511] = 0x55, 0xaa
	img := filepath.Join(dir, "sda.img")
	must(os.WriteFile(img, disk, 0o600))
	ctx := context.Background()
	must(blockmap.Init(ctx, f.repo, blockmap.InitOptions{}))
	repo, err := blockmap.Open(ctx, f.repo, blockmap.Options{})
	must(err)
	defer repo.Close()
	f.point, err = backupd.Import(ctx, repo, "web-1", []backupd.ImportDisk{{Name: "sda", Source: img}}, backupd.ImportOptions{})
	must(err)

	// Five more points of web-1 (the same image: nothing new stored),
	// for the cache of open points.
	for i := range 5 {
		at := f.point.Time.Add(-time.Duration(i+1) * time.Hour) // older: latest stays f.point
		_, err := backupd.Import(ctx, repo, "web-1", []backupd.ImportDisk{{Name: "sda", Source: img}}, backupd.ImportOptions{Point: blockmap.PointOptions{Time: at}})
		must(err)
	}

	// VM db-1: disk sda is an LVM PV (no partition table) of VG vg0
	// whose LV data holds an ext4 filesystem made from src/etc.
	pv := filepath.Join(dir, "pv.img")
	must(os.WriteFile(pv, nil, 0o600))
	must(os.Truncate(pv, 32<<20))
	offs := lvmfixture.Simple(t, dir, pv, "vg0", []string{"data"}, []int{12})
	lvImg := filepath.Join(dir, "lv.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", filepath.Join(f.src, "etc"), lvImg, "12M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	lv, err := os.ReadFile(lvImg)
	must(err)
	pvf, err := os.OpenFile(pv, os.O_WRONLY, 0)
	must(err)
	_, err = pvf.WriteAt(lv, offs["data"])
	must(err)
	must(pvf.Close())
	_, err = backupd.Import(ctx, repo, "db-1", []backupd.ImportDisk{{Name: "sda", Source: pv}}, backupd.ImportOptions{})
	must(err)
	return f
}

const browseConfig = `repository: %s
listen: 127.0.0.1:0
timezone: UTC
`

func startBrowseServer(t *testing.T) (*apiServer, browseFixture) {
	t.Helper()
	f := buildBrowseFixture(t)
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(browseConfig, f.repo)))
	if err != nil {
		t.Fatal(err)
	}
	return runTestServer(t, f.repo, cfg, nil), f
}

// get sends a GET with the token (or none when tok is "-") and extra
// headers; it returns the whole answer.
func (a *apiServer) get(t *testing.T, path, tok string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, a.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "-" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func (a *apiServer) mint(t *testing.T, req DownloadRequest) DownloadTicket {
	t.Helper()
	raw, _ := json.Marshal(req)
	code, body := a.do(t, http.MethodPost, "/api/v1/downloads", string(raw), nil)
	var tk DownloadTicket
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &tk) != nil || !strings.HasPrefix(tk.URL, "/api/v1/download/") {
		t.Fatalf("POST /api/v1/downloads %+v: %d %s", req, code, body)
	}
	return tk
}

// TestConsoleFileEndpoints: the file endpoints of a real server over a
// point imported from a real ext4 image: listing, downloads with Range,
// a directory as a tar that real tar extracts into the source tree,
// traversal attempts, the token and the download tickets.
func TestConsoleFileEndpoints(t *testing.T) {
	a, f := startBrowseServer(t)
	base := "/api/v1/points/web-1/latest"

	t.Run("repository", func(t *testing.T) {
		code, body := a.do(t, http.MethodGet, "/api/v1/repository", "", nil)
		var got RepositoryOverview
		if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.Space == nil || got.Space.Size <= 0 ||
			got.Space.Free > got.Space.Size || got.Dir != f.repo || len(got.RPO) != 0 {
			t.Fatalf("%d %s", code, body)
		}
	})

	t.Run("filesystems", func(t *testing.T) {
		code, body := a.do(t, http.MethodGet, base+"/filesystems", "", nil)
		var got FilesystemsResponse
		if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("%d %s", code, body)
		}
		if got.Point != f.point.ID || len(got.Filesystems) != 1 || got.Filesystems[0].Name != "sda/p1" || got.Filesystems[0].Type != "ext4" || got.Filesystems[0].Error != "" {
			t.Fatalf("filesystems %+v", got)
		}
	})

	t.Run("lvm", func(t *testing.T) {
		code, body := a.do(t, http.MethodGet, "/api/v1/points/db-1/latest/filesystems", "", nil)
		var got FilesystemsResponse
		if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("%d %s", code, body)
		}
		var ok []string
		for _, f := range got.Filesystems {
			if f.Error == "" {
				ok = append(ok, f.Name+"="+f.Type)
			}
		}
		if strings.Join(ok, " ") != "lvm/vg0/data=ext4" {
			t.Fatalf("readable filesystems %v (all: %+v)", ok, got.Filesystems)
		}
		code, body = a.do(t, http.MethodGet, "/api/v1/points/db-1/latest/files?fs=lvm/vg0/data&path=/", "", nil)
		var ls FilesResponse
		if code != http.StatusOK || json.Unmarshal([]byte(body), &ls) != nil || len(ls.Entries) != 3 || ls.Entries[0].Name != "hosts" || ls.Entries[2].Name != "shadow" {
			t.Fatalf("files of lvm/vg0/data: %d %s", code, body)
		}
		tk := a.mint(t, DownloadRequest{VM: "db-1", FS: "lvm/vg0/data", Path: "/shadow"})
		if resp, got := a.get(t, tk.URL, "-", nil); resp.StatusCode != http.StatusOK || string(got) != "root:*:20000:0:99999:7:::\n" {
			t.Errorf("lvm/vg0/data /shadow: %d %q", resp.StatusCode, got)
		}
	})

	list := func(t *testing.T, p string) FilesResponse {
		t.Helper()
		code, body := a.do(t, http.MethodGet, base+"/files?fs=sda/p1&path="+p, "", nil)
		var got FilesResponse
		if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("files %s: %d %s", p, code, body)
		}
		return got
	}
	names := func(r FilesResponse) string {
		var n []string
		for _, e := range r.Entries {
			n = append(n, e.Name)
		}
		return strings.Join(n, ",")
	}

	t.Run("listing", func(t *testing.T) {
		if got := names(list(t, "/")); got != "data,etc,lost+found" {
			t.Errorf("/ lists %s", got)
		}
		sub := list(t, "/data/sub")
		if got := names(sub); got != "big-link,notes café.txt,null,pipe,run-link.sh,run.sh" {
			t.Errorf("/data/sub lists %s", got)
		}
		byName := map[string]FileEntry{}
		for _, e := range sub.Entries {
			byName[e.Name] = e
		}
		if e := byName["big-link"]; e.Kind != "symlink" || e.Target != "../big.bin" {
			t.Errorf("big-link %+v", e)
		}
		if e := byName["run.sh"]; e.Kind != "file" || e.Perm != 0o4755 || e.Mode != "-rwsr-xr-x" || e.UID == nil || *e.UID != 0 || e.Size != 18 {
			t.Errorf("run.sh %+v", e)
		}
		if e := byName["notes café.txt"]; e.UID == nil || *e.UID != 1000 || *e.GID != 1000 || !e.Mtime.Equal(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)) {
			t.Errorf("notes café.txt %+v", e)
		}
		one := list(t, "data/big.bin")
		if one.Path != "/data/big.bin" || one.Entry.Kind != "file" || one.Entry.Size != int64(len(f.big)) || one.Entries != nil {
			t.Errorf("data/big.bin %+v", one)
		}
	})

	t.Run("traversal", func(t *testing.T) {
		// .. never climbs above the guest filesystem's root: these are
		// the guest's root or the guest's /etc, never the host's.
		for _, p := range []string{"..", "../..", "/../../..", "data/../../..", "%2e%2e%2f%2e%2e"} {
			if got := names(list(t, p)); got != "data,etc,lost+found" {
				t.Errorf("path %q lists %s, want the guest's root", p, got)
			}
		}
		if got := list(t, "../../../etc"); names(got) != "hosts,shadow" {
			t.Errorf("../../../etc lists %s, want the guest's /etc", names(got))
		}
		for _, c := range []struct{ path, want string }{
			{base + "/files?fs=sda/p1&path=../../../../etc/passwd", "not exist"}, // the host's file is not in the guest
			{base + "/files?fs=../../../..&path=/", "no such guest filesystem"},
			{base + "/files?fs=sda/p1/../../..&path=/", "no such guest filesystem"},
			{base + "/files?fs=/&path=/", "no such guest filesystem"},
			{base + "/files?path=/", "no filesystem"},
			{"/api/v1/points/..%2f..%2fetc/latest/files?fs=sda/p1&path=/", "not found"},
			{"/api/v1/points/web-1/..%2f..%2f/files?fs=sda/p1&path=/", ""},
		} {
			code, body := a.do(t, http.MethodGet, c.path, "", nil)
			if code != http.StatusNotFound || !strings.Contains(body, c.want) || strings.Contains(body, "root:x:0:0") {
				t.Errorf("GET %s: %d %s", c.path, code, body)
			}
		}
		// A ticket for a path outside the guest is refused when minted.
		raw := `{"vm":"web-1","point":"latest","fs":"sda/p1","path":"../../../../etc/passwd"}`
		if code, body := a.do(t, http.MethodPost, "/api/v1/downloads", raw, nil); code != http.StatusNotFound {
			t.Errorf("mint for ../../etc/passwd: %d %s", code, body)
		}
	})

	t.Run("token", func(t *testing.T) {
		for _, p := range []string{base + "/filesystems", base + "/files?fs=sda/p1&path=/", "/api/v1/status"} {
			if resp, body := a.get(t, p, "-", nil); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s without token: %d %s", p, resp.StatusCode, body)
			}
		}
		if code, body := a.do(t, http.MethodPost, "/api/v1/downloads", `{"vm":"web-1","fs":"sda/p1","path":"/etc/hosts"}`,
			map[string]string{"Authorization": "-"}); code != http.StatusUnauthorized {
			t.Errorf("mint without token: %d %s", code, body)
		}
		// The console's pages need no token and hold no data.
		resp, body := a.get(t, "/ui/", "-", nil)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`<script src="app.js"`)) {
			t.Errorf("/ui/: %d %s", resp.StatusCode, body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); csp != ConsoleCSP || resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("/ui/ headers %v", resp.Header)
		}
		if resp, _ := a.get(t, "/", "-", nil); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
			t.Errorf("/: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp, _ := a.get(t, "/api/v1/vms", "", nil); resp.Header.Get("Cache-Control") != "no-store" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("API answer headers %v", resp.Header)
		}
	})

	t.Run("file", func(t *testing.T) {
		tk := a.mint(t, DownloadRequest{VM: "web-1", FS: "sda/p1", Path: "/data/big.bin"})
		if tk.Name != "big.bin" || tk.Kind != "file" || tk.Size != int64(len(f.big)) || time.Until(tk.Expires) > DownloadTTL {
			t.Errorf("ticket %+v", tk)
		}
		resp, body := a.get(t, tk.URL, "-", nil)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, f.big) {
			t.Fatalf("GET %s: %d, %d bytes, equal %v", tk.URL, resp.StatusCode, len(body), bytes.Equal(body, f.big))
		}
		if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename=big.bin` {
			t.Errorf("Content-Disposition %q", cd)
		}
		if resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("ETag") == "" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("headers %v", resp.Header)
		}
		// A resume: the rest from inside the hole, checked against the ETag.
		from := int64(1<<20 + 12345)
		resp, body = a.get(t, tk.URL, "-", map[string]string{"Range": fmt.Sprintf("bytes=%d-", from), "If-Range": resp.Header.Get("ETag")})
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.big[from:]) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", from, len(f.big)-1, len(f.big)) {
			t.Errorf("Range from %d: %d %q, %d bytes", from, resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
		}
		resp, body = a.get(t, tk.URL, "-", map[string]string{"Range": "bytes=100-199"})
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.big[100:200]) {
			t.Errorf("Range 100-199: %d, %d bytes", resp.StatusCode, len(body))
		}
		// If-Range with another validator: the whole file again.
		resp, body = a.get(t, tk.URL, "-", map[string]string{"Range": "bytes=100-199", "If-Range": `"other"`})
		if resp.StatusCode != http.StatusOK || len(body) != len(f.big) {
			t.Errorf("stale If-Range: %d, %d bytes", resp.StatusCode, len(body))
		}
		// A UTF-8 name is given in RFC 5987 form.
		tk = a.mint(t, DownloadRequest{VM: "web-1", Point: f.point.ID, FS: "sda/p1", Path: "data/sub/notes café.txt"})
		resp, body = a.get(t, tk.URL, "-", nil)
		if string(body) != "notes with a space and UTF-8\n" || resp.Header.Get("Content-Disposition") != `attachment; filename*=utf-8''notes%20caf%C3%A9.txt` {
			t.Errorf("notes café.txt: %q %q", body, resp.Header.Get("Content-Disposition"))
		}
		// A symlink is not downloaded (its target is another path).
		if code, body := a.do(t, http.MethodPost, "/api/v1/downloads", `{"vm":"web-1","fs":"sda/p1","path":"/data/sub/big-link"}`, nil); code != http.StatusUnprocessableEntity {
			t.Errorf("mint for a symlink: %d %s", code, body)
		}
	})

	t.Run("tickets", func(t *testing.T) {
		tk := a.mint(t, DownloadRequest{VM: "web-1", FS: "sda/p1", Path: "/etc/hosts"})
		ticket := strings.TrimPrefix(tk.URL, "/api/v1/download/")
		body, sig, _ := strings.Cut(ticket, ".")
		// Another path under the same signature.
		forged, _ := json.Marshal(ticketClaims{VM: "web-1", Point: f.point.ID, FS: "sda/p1", Path: "etc/shadow", Expires: time.Now().Add(time.Hour).Unix()})
		expired, err := a.s.signTicket(ticketClaims{VM: "web-1", Point: f.point.ID, FS: "sda/p1", Path: "etc/shadow", Expires: time.Now().Add(-time.Second).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		flip := []byte(sig)
		flip[3] ^= 1
		for name, c := range map[string]struct{ ticket, want string }{
			"forged claims": {b64(forged) + "." + sig, "bad signature"},
			"flipped sig":   {body + "." + string(flip), ""},
			"no sig":        {body, "malformed"},
			"expired":       {expired, "expired"},
			"garbage":       {"..%2f..%2fetc%2fpasswd", ""},
		} {
			resp, got := a.get(t, "/api/v1/download/"+c.ticket, "-", nil)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(got), c.want) || strings.Contains(string(got), "root:") {
				t.Errorf("%s: %d %s", name, resp.StatusCode, got)
			}
		}
		if resp, got := a.get(t, tk.URL, "-", nil); resp.StatusCode != http.StatusOK || string(got) != "127.0.0.1 localhost\n" {
			t.Errorf("the good ticket: %d %q", resp.StatusCode, got)
		}
	})

	t.Run("open points", func(t *testing.T) {
		// Six points listed at once by 12 clients: every answer is right,
		// and at most maxOpenBrowsers points stay open afterwards.
		code, body := a.do(t, http.MethodGet, "/api/v1/points?vm=web-1", "", nil)
		var pts []blockmap.Point
		if code != http.StatusOK || json.Unmarshal([]byte(body), &pts) != nil || len(pts) != 6 {
			t.Fatalf("points of web-1: %d %s", code, body)
		}
		errs := make(chan string, 12)
		for i := range 12 {
			go func() {
				p := pts[i%len(pts)]
				code, body := a.do(t, http.MethodGet, "/api/v1/points/web-1/"+p.ID+"/files?fs=sda/p1&path=/etc", "", nil)
				var got FilesResponse
				if code != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.Point != p.ID || names(got) != "hosts,shadow" {
					errs <- fmt.Sprintf("%s: %d %s", p.ID, code, body)
					return
				}
				errs <- ""
			}()
		}
		for range 12 {
			if e := <-errs; e != "" {
				t.Error(e)
			}
		}
		a.s.browse.mu.Lock()
		open := len(a.s.browse.open)
		a.s.browse.mu.Unlock()
		if open > maxOpenBrowsers {
			t.Errorf("%d points open after the requests, want at most %d", open, maxOpenBrowsers)
		}
	})

	t.Run("tar", func(t *testing.T) {
		tk := a.mint(t, DownloadRequest{VM: "web-1", FS: "sda/p1", Path: "/data"})
		if tk.Name != "data.tar" || tk.Kind != "dir" {
			t.Errorf("ticket %+v", tk)
		}
		resp, body := a.get(t, tk.URL, "-", nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-tar" || resp.Header.Get("Content-Disposition") != "attachment; filename=data.tar" {
			t.Fatalf("GET tar: %d %v", resp.StatusCode, resp.Header)
		}
		dir := t.TempDir()
		tarFile := filepath.Join(dir, "data.tar")
		if err := os.WriteFile(tarFile, body, 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "x")
		os.Mkdir(out, 0o755)
		if b, err := exec.Command("tar", "-xpf", tarFile, "--numeric-owner", "-C", out).CombinedOutput(); err != nil {
			t.Fatalf("tar -x: %v\n%s", err, b)
		}
		want, got := treeOf(t, filepath.Join(f.src, "data")), treeOf(t, filepath.Join(out, "data"))
		if len(want) != len(got) {
			t.Errorf("extracted %d entries, want %d:\n%v\n%v", len(got), len(want), got, want)
		}
		for p, w := range want {
			if g, ok := got[p]; !ok || g != w {
				t.Errorf("%s: extracted %q, want %q", p, g, w)
			}
		}
		// The hard link is one inode after extraction too.
		a1, err1 := os.Stat(filepath.Join(out, "data/sub/run.sh"))
		a2, err2 := os.Stat(filepath.Join(out, "data/sub/run-link.sh"))
		if err1 != nil || err2 != nil || !os.SameFile(a1, a2) {
			t.Errorf("run.sh and run-link.sh are not one inode: %v %v", err1, err2)
		}
		// The filesystem's root downloads as sda-p1.tar.
		if tk := a.mint(t, DownloadRequest{VM: "web-1", FS: "sda/p1", Path: "/"}); tk.Name != "sda-p1.tar" {
			t.Errorf("root ticket %+v", tk)
		}
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// treeOf describes every entry under root: type, mode, owner, mtime
// (seconds), size and SHA-256 or symlink target.
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d %d", fi.Mode(), st.Uid, st.Gid, fi.ModTime().Unix())
		if fi.Mode()&fs.ModeDevice != 0 {
			desc += fmt.Sprintf(" dev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d %x", len(data), sha256.Sum256(data))
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
