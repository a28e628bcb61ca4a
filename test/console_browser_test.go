package test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd/serve"
)

// TestConsoleInBrowser starts `cairn serve` on a repository filled by
// `cairn import` of real mkfs images (buildHistoryFixture: VM u, ext4 on
// sda, an MBR disk sdb, FAT on sdc) and loads the web console in a real
// headless Chromium, logged in by the token in the URL fragment: the
// dashboard shows the VM and its jobs' state, a point's file listing
// shows the guest's real file names, and the rendered pages no longer
// carry the token in their address.
func TestConsoleInBrowser(t *testing.T) {
	chromium := requireChromium(t)
	f := buildHistoryFixture(t, false)
	// VM evil-1: a guest whose file and directory names are HTML.
	evil := filepath.Join(t.TempDir(), "evil")
	hostile := `<img src=x onerror="document.title='pwned'">.txt`
	if err := os.MkdirAll(filepath.Join(evil, "<b>dir</b>"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(evil, "<b>dir</b>", hostile), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evilImg := filepath.Join(t.TempDir(), "evil.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", evil, evilImg, "8M")
	mustCairn(t, "--repo", f.repo, "import", "--vm", "evil-1", "--disk", "sda", evilImg)
	api, _, logs := consoleServe(t, buildCairn(t), f.repo)
	tok, err := serve.ReadToken(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	render := consoleRenderer(chromium, api.base)
	login := "token=" + url.QueryEscape(tok)

	t.Run("dashboard", func(t *testing.T) {
		dom := render(t, login)
		for _, want := range []string{`id="dashboard"`, `<a href="#/vm?name=u">u</a>`, `<a href="#/point?vm=u&amp;point=` + f.ids[len(f.ids)-1] + `">`, "Repository verify"} {
			if !strings.Contains(dom, want) {
				t.Errorf("dashboard lacks %q:\n%s", want, dom)
			}
		}
		if !strings.Contains(dom, `id="login" hidden`) {
			t.Errorf("the login form is still shown:\n%s", dom)
		}
	})

	t.Run("files", func(t *testing.T) {
		next := "/files?" + url.Values{"vm": {"u"}, "point": {f.ids[3]}, "fs": {"sda/whole"}, "path": {"/etc"}}.Encode()
		dom := render(t, login+"&next="+url.QueryEscape(next))
		for _, want := range []string{`id="files"`, ">app.conf<", "-rw-r--r--", "180 B"} {
			if !strings.Contains(dom, want) {
				t.Errorf("the listing of /etc lacks %q:\n%s", want, dom)
			}
		}
		next = "/files?" + url.Values{"vm": {"u"}, "point": {f.ids[0]}, "fs": {"sdc/whole"}, "path": {"/Docs"}}.Encode()
		if dom := render(t, login+"&next="+url.QueryEscape(next)); !strings.Contains(dom, ">Q3 Report.XLSX<") {
			t.Errorf("the FAT listing of /Docs lacks Q3 Report.XLSX:\n%s", dom)
		}
	})

	t.Run("hostile names", func(t *testing.T) {
		// Guest names are text, never markup: escaped in the DOM, no
		// element made of them, nothing run (render fails on console
		// errors and CSP reports).
		next := "/files?" + url.Values{"vm": {"evil-1"}, "point": {"latest"}, "fs": {"sda/whole"}, "path": {"/<b>dir</b>"}}.Encode()
		dom := render(t, login+"&next="+url.QueryEscape(next))
		if !strings.Contains(dom, `&lt;img src=x onerror="document.title='pwned'"&gt;.txt`) || !strings.Contains(dom, "&lt;b&gt;dir&lt;/b&gt;") {
			t.Errorf("the hostile names are not shown as text:\n%s", dom)
		}
		if strings.Contains(dom, "<img") || strings.Contains(dom, "<b>") || strings.Contains(dom, "pwned</title>") {
			t.Errorf("a guest name became markup:\n%s", dom)
		}
	})

	t.Run("point", func(t *testing.T) {
		dom := render(t, login+"&next="+url.QueryEscape("/point?vm=u&point=latest"))
		for _, want := range []string{"/ " + f.ids[len(f.ids)-1] + "</div>", "<td>sda</td>", "<td>sdb</td>", "<td>sdc</td>",
			`<a href="#/files?vm=u&amp;point=` + f.ids[len(f.ids)-1] + `&amp;fs=sdb%2Fp1&amp;path=%2F">sdb/p1</a>`, "Restore as a new VM",
			">Instant recovery</h2>", ">Instant recovery</button>"} {
			if !strings.Contains(dom, want) {
				t.Errorf("the point's page lacks %q:\n%s", want, dom)
			}
		}
	})

	t.Run("history", func(t *testing.T) {
		var h serve.HistoryResponse
		if !api.getJSON("/api/v1/vms/u/history?fs=sda/whole&path=/etc/app.conf", &h) || len(h.Filesystems) != 1 {
			t.Fatalf("history %+v", h)
		}
		var vers []int
		for _, r := range h.Filesystems[0].Runs {
			vers = append(vers, r.Version)
		}
		// P1 A, P2 B (same size and mtime, other bytes), P3 absent, P4-P5 C.
		if fmt.Sprint(vers) != "[1 2 0 3]" || h.Filesystems[0].Runs[3].Points != 2 || h.Filesystems[0].Runs[3].SHA256 != sha(f.c) {
			t.Errorf("history runs %+v", h.Filesystems[0].Runs)
		}
		next := "/history?" + url.Values{"vm": {"u"}, "fs": {"sda/whole"}, "path": {"/etc/app.conf"}}.Encode()
		dom := render(t, login+"&next="+url.QueryEscape(next))
		for _, want := range []string{"Versions of /etc/app.conf in sda/whole", ">v3<", sha(f.c)} {
			if !strings.Contains(dom, want) {
				t.Errorf("the versions view lacks %q:\n%s", want, dom)
			}
		}
	})

	t.Run("changes", func(t *testing.T) {
		// P2 is P1 with /etc/app.conf's bytes replaced (same size, same
		// mtime): the one change, found by its content.
		next := "/changes?" + url.Values{"vm": {"u"}, "point": {f.ids[1]}}.Encode()
		dom := render(t, login+"&next="+url.QueryEscape(next))
		for _, want := range []string{`id="changes"`, "from " + f.ids[0] + " to " + f.ids[1], "<td>/etc/app.conf</td>", "<td>modified</td>", "<td>content</td>", "1 modified"} {
			if !strings.Contains(dom, want) {
				t.Errorf("the changes view lacks %q:\n%s", want, dom)
			}
		}
	})

	t.Run("jobs", func(t *testing.T) {
		// The repository's job log holds the five imports, with their points.
		dom := render(t, login+"&next="+url.QueryEscape("/jobs"))
		for _, want := range append([]string{`id="jobs"`, "History (every process on the repository)"}, f.ids...) {
			if !strings.Contains(dom, want) {
				t.Errorf("the jobs view lacks %q:\n%s", want, dom)
			}
		}
	})

	t.Run("wrong token", func(t *testing.T) {
		dom := render(t, "token="+strings.Repeat("0", 64))
		if !strings.Contains(dom, "The token was refused") || strings.Contains(dom, `id="dashboard"`) {
			t.Errorf("a wrong token did not end on the login form:\n%s", dom)
		}
	})
	if strings.Contains(logs.String(), tok) {
		t.Errorf("serve logged the token:\n%s", logs.String())
	}
}
