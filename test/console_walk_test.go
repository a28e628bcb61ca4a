package test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cd "github.com/chromedp/chromedp"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/internal/esxsim"
	"github.com/cairnbackup/cairn/internal/esxsim/esxsimtest"
	"github.com/cairnbackup/cairn/internal/lab"
	"github.com/cairnbackup/cairn/internal/lvmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// walkBigDir is the number of entries of the web guest's /big.
const walkBigDir = 10000

// TestConsoleWalk walks the web console as an administrator would, in a
// headless Chromium driven through the DevTools protocol (chromedp), over
// one `cairn serve` backing up three VMs of the simulated vCenter: web
// (ext4: a known file, a directory of 10,000 entries, a very long name),
// centos (MD raid1 /boot, LVM root on MD) and tiny (btrfs on the whole
// disk). It types a wrong and then the right token into the login form
// (a bookmarked file URL opens after the login), clicks the download of a
// file and of a directory's tar and compares the bytes the browser saved
// with the guest's, pages the large directory, browses md, lvm and btrfs
// filesystems, clicks "Back up now" and sees the run end in the polled
// page without a reload, checks a file's versions, restores a point as a
// new VM from the point's form, keeps the keyboard focus across a poll, fits a
// phone-sized viewport, says so when serve stops and recovers when it is
// back, and logs out.
func TestConsoleWalk(t *testing.T) {
	chromium := requireChromium(t)
	testutil.RequireTools(t, append(lvmfixture.Required, "mkfs.ext4", "mdadm", "mkfs.btrfs", "sgdisk")...)
	bin := buildCairn(t)
	dir := t.TempDir()

	// web: ext4 on the whole disk.
	src := filepath.Join(dir, "websrc")
	appConf := make([]byte, 300<<10+17)
	rand.Read(appConf)
	longName := strings.Repeat("very-long-name-", 16) + "end.txt" // 247 bytes
	files := map[string][]byte{
		"etc/app.conf":         appConf,
		"etc/hostname":         []byte("web\n"),
		"etc/ssl/certs/ca.pem": []byte("-----BEGIN CERTIFICATE-----\n"),
		"srv/" + longName:      []byte("long\n"),
		"a/b/c/d/e/f/deep.txt": []byte("deep\n"),
	}
	for p, b := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755)
		if err := os.WriteFile(filepath.Join(src, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(src, "big"), 0o755)
	for i := 0; i < walkBigDir; i++ {
		if err := os.WriteFile(filepath.Join(src, "big", fmt.Sprintf("f%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	webImg := filepath.Join(dir, "web.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-N", "12000", "-d", src, webImg, "64M")
	// tiny: btrfs on the whole disk.
	bsrc := filepath.Join(dir, "btrfssrc")
	os.MkdirAll(filepath.Join(bsrc, "home", "alice"), 0o755)
	os.WriteFile(filepath.Join(bsrc, "home", "alice", "notes.txt"), []byte("btrfs notes\n"), 0o644)
	btrfsImg := filepath.Join(dir, "tiny.img")
	makeImage(t, btrfsImg, 128*mib)
	sh(t, "mkfs.btrfs", "-q", "-r", bsrc, btrfsImg)
	os.Mkdir(filepath.Join(dir, "centos"), 0o755)
	centos := buildCentOS(t, filepath.Join(dir, "centos"))

	sim := esxsimtest.Start(t, esxsim.Options{VMs: []esxsim.VMSpec{
		{Name: "web", Disks: []esxsim.DiskSpec{{Size: 64 * mib}}},
		{Name: "centos", Disks: []esxsim.DiskSpec{{Size: centosDiskSize}, {Size: centosDiskSize}}},
		{Name: "tiny", Disks: []esxsim.DiskSpec{{Size: 128 * mib}}},
	}})
	for vm, imgs := range map[string][]string{"web": {webImg}, "centos": centos.disks, "tiny": {btrfsImg}} {
		g, err := sim.Guest(vm)
		if err != nil {
			t.Fatal(err)
		}
		for i, img := range imgs {
			if _, err := g.SyncFromImage(i, img); err != nil {
				t.Fatal(err)
			}
		}
	}
	creds := filepath.Join(dir, "vc-credentials")
	if err := os.WriteFile(creds, []byte(sim.User+"\n"+sim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := serveFreeAddr(t)
	cfg := lab.ServeConfig{
		Repository:  filepath.Join(dir, "repo"),
		Listen:      listen,
		Parallelism: lab.ParallelismConfig{VMs: 2, PerHost: 2},
		Verify:      lab.VerifyConfig{Schedule: "@every 24h"},
		VCenters:    []lab.VCenterConfig{{Name: "sim", URL: sim.URL.String(), Credentials: creds, Thumbprint: sim.Thumbprint}},
		Jobs: []lab.JobConfig{{
			Name: "walk", VCenter: "sim", VMs: []string{"web", "centos", "tiny"}, Schedule: "@every 24h",
			Retention: lab.RetentionConfig{KeepLast: 5}, Transports: []string{"file"}, Quiesce: "auto", RetryDelay: "10s",
		}},
	}
	cfgFile := writeServeConfig(t, dir, cfg)
	var logs serveLogBuffer
	var srv *exec.Cmd
	var exited <-chan error
	api := serveAPI{base: "http://" + listen, repo: cfg.Repository}
	startServe := func() {
		srv, exited = serveStartChild(t, bin, &logs, "serve", "--config", cfgFile)
		serveWaitFor(t, "serve to answer", exited, &logs, func() bool {
			var v any
			return api.getJSON("/api/v1/vms", &v)
		})
	}
	stopServe := func() {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30s of SIGTERM")
		}
	}
	startServe()
	t.Cleanup(func() {
		if srv.ProcessState == nil {
			stopServe()
		}
	})
	for _, vm := range []string{"web", "centos", "tiny"} {
		mustCairn(t, "--repo", cfg.Repository, "trigger", "--vm", vm, "--wait")
	}
	tok, err := serve.ReadToken(cfg.Repository)
	if err != nil {
		t.Fatal(err)
	}
	var webFS serve.FilesystemsResponse
	if !api.getJSON("/api/v1/points/web/latest/filesystems", &webFS) || len(webFS.Filesystems) != 1 {
		t.Fatalf("web's filesystems: %+v", webFS)
	}
	fsName := webFS.Filesystems[0].Name
	filesURL := func(vm, fs, path string) string {
		return api.base + "/ui/#/files?" + url.Values{"vm": {vm}, "point": {"latest"}, "fs": {fs}, "path": {path}}.Encode()
	}

	// One browser for every step.
	dl := filepath.Join(dir, "downloads")
	os.Mkdir(dl, 0o755)
	profile := filepath.Join(dir, "chromium")
	opts := append(slices.Clone(cd.DefaultExecAllocatorOptions[:]), cd.ExecPath(chromium), cd.NoSandbox, cd.UserDataDir(profile),
		cd.WindowSize(1280, 900), cd.Env("HOME="+profile))
	actx, cancelA := cd.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := cd.NewContext(actx)
	defer cancelB()
	if err := cd.Do(bctx, cd.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := cd.CallBrowser(bctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl}); err != nil {
		t.Fatal(err)
	}
	// step runs one browser step with a deadline: a page stuck (in an
	// alert, say) fails the step instead of hanging the test.
	step := func(t *testing.T, what string, acts ...cd.Action[cd.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if err := cd.Do(ctx, acts...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	js := func(t *testing.T, expr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		s, err := cd.Run(ctx, cd.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return s
	}
	// waitJS waits until expr (a boolean expression) holds in the page.
	waitJS := func(t *testing.T, what, expr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if _, err := cd.Run(ctx, cd.Poll[bool](expr, cd.WithPollingInterval(50*time.Millisecond))); err != nil {
			t.Fatalf("waiting for %s: %v\npage: %s", what, err, js(t, `document.body.innerText.slice(0, 3000)`))
		}
	}
	// clickText clicks (with the mouse) the first element matching sel
	// whose text is text, in the row of rowText if given.
	clickText := func(t *testing.T, sel, text, rowText string) {
		t.Helper()
		found := js(t, fmt.Sprintf(`(() => { for (const e of document.querySelectorAll(%q)) {
			if (e.closest("[hidden]") || e.textContent.trim() !== %q) continue;
			const tr = e.closest("tr");
			if (%q && !(tr && [...tr.cells].some(c => c.textContent.trim().startsWith(%q)))) continue;
			document.querySelectorAll("[data-walk]").forEach(x => x.removeAttribute("data-walk"));
			e.setAttribute("data-walk", "1"); return "yes"; } return "no"; })()`, sel, text, rowText, rowText))
		if found != "yes" {
			t.Fatalf("no %s %q (row %q) in the page:\n%s", sel, text, rowText, js(t, `document.body.innerText.slice(0, 3000)`))
		}
		step(t, "click "+text, cd.Click(cd.CSS(`[data-walk="1"]`)))
	}
	// downloaded waits for the browser to finish saving name in dl.
	downloaded := func(t *testing.T, name string) []byte {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			b, err := os.ReadFile(filepath.Join(dl, name))
			if _, perr := os.Stat(filepath.Join(dl, name+".crdownload")); err == nil && errors.Is(perr, os.ErrNotExist) {
				return b
			}
			time.Sleep(50 * time.Millisecond)
		}
		ents, _ := os.ReadDir(dl)
		t.Fatalf("the browser saved no %s (download directory: %v)", name, ents)
		return nil
	}
	rows := `document.querySelectorAll("#view tbody tr").length`

	t.Run("login form", func(t *testing.T) {
		// A bookmarked file URL, opened before logging in.
		step(t, "open bookmark", cd.Navigate(filesURL("web", fsName, "/etc")), cd.WaitVisible(cd.CSS("#token")))
		if got := js(t, `String(document.querySelector("#token").labels.length) + " " + document.activeElement.id`); got != "1 token" {
			t.Errorf("token field: labels and focus %q, want a label and the focus", got)
		}
		step(t, "wrong token", cd.SendKeys(cd.CSS("#token"), strings.Repeat("0", 64)), cd.Click(cd.CSS("#loginform button")))
		waitJS(t, "the refusal", `document.querySelector("#loginerror").textContent.includes("refused")`)
		// The right token, submitted from the keyboard (Enter).
		step(t, "right token", cd.SendKeys(cd.CSS("#token"), tok+"\r"))
		waitJS(t, "the bookmarked listing", `!!document.querySelector("#files") && document.body.innerText.includes("app.conf")`)
		if js(t, `document.querySelector("#loginerror").textContent`) != "" {
			t.Errorf("the refusal is still shown after a successful login")
		}
		// The keyboard goes on from the view's title, not the hidden form.
		if got := js(t, `document.activeElement.tagName + " " + document.activeElement.textContent.trim().slice(0, 40)`); !strings.HasPrefix(got, "H1 /etc") {
			t.Errorf("after the login the focus is on %q, want the view's title", got)
		}
	})

	t.Run("download file", func(t *testing.T) {
		clickText(t, "#view button", "download", "app.conf")
		if b := downloaded(t, "app.conf"); !bytes.Equal(b, appConf) {
			t.Errorf("the downloaded app.conf has %d bytes that differ from the guest's %d", len(b), len(appConf))
		}
	})

	t.Run("download tar", func(t *testing.T) {
		clickText(t, "#view button", "tar", "ssl/")
		b := downloaded(t, "ssl.tar")
		got := map[string][]byte{}
		tr := tar.NewReader(bytes.NewReader(b))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("ssl.tar: %v", err)
			}
			if h.Typeflag == tar.TypeReg {
				got[strings.TrimPrefix(h.Name, "./")], _ = io.ReadAll(tr)
			}
		}
		if len(got) != 1 || !bytes.Equal(got["ssl/certs/ca.pem"], files["etc/ssl/certs/ca.pem"]) {
			var names []string
			for n := range got {
				names = append(names, n)
			}
			t.Errorf("ssl.tar holds %v, want ssl/certs/ca.pem with the guest's bytes", names)
		}
	})

	t.Run("deep path and long name", func(t *testing.T) {
		step(t, "deep", cd.Navigate(filesURL("web", fsName, "/a/b/c/d/e/f")))
		waitJS(t, "deep.txt", `document.body.innerText.includes("deep.txt")`)
		step(t, "long", cd.Navigate(filesURL("web", fsName, "/srv")))
		waitJS(t, "the long name", `document.body.innerText.includes("end.txt")`)
		if w := js(t, `String(document.documentElement.scrollWidth <= window.innerWidth)`); w != "true" {
			t.Errorf("a long name widens the page past the window (%s px > %s px)", js(t, `String(document.documentElement.scrollWidth)`), js(t, `String(window.innerWidth)`))
		}
	})

	t.Run("large directory", func(t *testing.T) {
		// The answers of /big are measured below: start with none.
		js(t, `performance.clearResourceTimings(); performance.setResourceTimingBufferSize(5000); ""`)
		step(t, "big", cd.Navigate(filesURL("web", fsName, "/big")))
		waitJS(t, "the listing of /big", `document.body.innerText.includes("f00000")`)
		n := js(t, "String("+rows+")")
		if n == fmt.Sprint(walkBigDir) || len(n) > 3 {
			t.Fatalf("/big renders %s rows at once, want one page", n)
		}
		if !strings.Contains(js(t, `document.querySelector("#view").innerText`), fmt.Sprint(walkBigDir)+" entries") {
			t.Errorf("the page does not say how many entries /big has")
		}
		// Next and Previous ask the server for the page after the
		// cursor, and back.
		clickText(t, "#view button", "Next", "")
		waitJS(t, "the second page", `document.querySelector("#view tbody").innerText.includes("f00200") && !document.querySelector("#view tbody").innerText.includes("f00000")`)
		if v := js(t, `document.querySelector("#view").innerText`); !strings.Contains(v, "201–400 shown") {
			t.Errorf("the second page does not say which entries it shows")
		}
		clickText(t, "#view button", "Previous", "")
		waitJS(t, "the first page again", `document.querySelector("#view tbody").innerText.includes("f00000")`)
		// The filter, applied by the server to the whole directory,
		// finds the last entry.
		step(t, "filter", cd.SendKeys(cd.CSS("#filter"), "f09999"))
		waitJS(t, "f09999 alone", rows+` === 1 && document.querySelector("#view tbody").innerText.includes("f09999")`)
		if v := js(t, `document.querySelector("#view").innerText`); !strings.Contains(v, "1 of "+fmt.Sprint(walkBigDir)+" entries match") {
			t.Errorf("the filtered page does not say how many entries match")
		}
		// Every answer the browser got for /big was one page, not the
		// directory (10,000 entries answered at once were ~1.9 MB).
		sizes := js(t, `JSON.stringify(performance.getEntriesByType("resource").filter(e => e.name.includes("/files?") && e.name.includes("big")).map(e => e.decodedBodySize))`)
		var got []int
		if err := json.Unmarshal([]byte(sizes), &got); err != nil || len(got) < 3 {
			t.Fatalf("the listing requests of /big: %s %v", sizes, err)
		}
		for _, n := range got {
			if n > 300*200 { // ~195 bytes an entry
				t.Errorf("an answer for /big was %d bytes (all: %v), want at most one page of 200 entries", n, got)
			}
		}
	})

	t.Run("md lvm btrfs", func(t *testing.T) {
		step(t, "centos point", cd.Navigate(api.base+"/ui/#/point?vm=centos&point=latest"))
		waitJS(t, "centos's filesystems", `document.body.innerText.includes("lvm/centos/root") && document.body.innerText.includes("md/boot")`)
		for _, c := range []struct{ vm, fs, src string }{{"centos", "lvm/centos/root", centos.srcRoot}, {"centos", "md/boot", centos.srcBoot}, {"tiny", "", bsrc}} {
			fs := c.fs
			if fs == "" {
				var f serve.FilesystemsResponse
				if !api.getJSON("/api/v1/points/tiny/latest/filesystems", &f) || len(f.Filesystems) != 1 || f.Filesystems[0].Type != "btrfs" {
					t.Fatalf("tiny's filesystems: %+v", f)
				}
				fs = f.Filesystems[0].Name
			}
			step(t, fs, cd.Navigate(filesURL(c.vm, fs, "/")))
			// The hash changes in place: wait for this listing, not the last.
			waitJS(t, fs+" listing", fmt.Sprintf(`!!document.querySelector("#files tbody") && document.querySelector("#files .crumbs").textContent.includes(%q)`, c.vm+" / "))
			waitJS(t, fs+" listing", fmt.Sprintf(`document.querySelector("#files .crumbs").textContent.includes(%q)`, fs))
			ents, _ := os.ReadDir(c.src)
			for _, e := range ents {
				name := e.Name()
				if e.IsDir() {
					name += "/"
				}
				if !strings.Contains(js(t, `document.querySelector("#files tbody").innerText`), name) {
					t.Errorf("%s / lacks %s", fs, name)
				}
			}
		}
	})

	t.Run("back up now", func(t *testing.T) {
		step(t, "vm page", cd.Navigate(api.base+"/ui/#/vm?name=web"))
		waitJS(t, "the button", `document.body.innerText.includes("Back up now")`)
		js(t, `window.walkMarker = "no reload"; ""`)
		clickText(t, "#view button", "Back up now", "")
		waitJS(t, "the confirmation", `document.querySelector("#confirm").open`)
		step(t, "confirm", cd.Click(cd.CSS("#confirmok")))
		waitJS(t, "the queued run", `!!document.querySelector("#notice") && /run \S+/.test(document.querySelector("#notice").textContent)`)
		run := js(t, `document.querySelector("#notice").textContent.match(/run (\S+?)[ .(]/)[1]`)
		// The jobs view polls: the run's row ends ok without a reload.
		waitJS(t, "run "+run+" ok", fmt.Sprintf(`[...document.querySelectorAll("#jobs tbody tr")].some(r => r.cells[0].textContent === %q && r.cells[4].textContent === "ok")`, run))
		if js(t, `String(window.walkMarker)`) != "no reload" {
			t.Errorf("the page was reloaded")
		}
	})

	t.Run("versions and restore", func(t *testing.T) {
		step(t, "versions", cd.Navigate(api.base+"/ui/#/history?"+url.Values{"vm": {"web"}, "fs": {fsName}, "path": {"/etc/app.conf"}}.Encode()))
		waitJS(t, "the versions", `!!document.querySelector("#history tbody [title]")`)
		if got := js(t, `document.querySelector("#history tbody [title]").title`); got != sha(appConf) {
			t.Errorf("the version's SHA-256 is %s, want %s", got, sha(appConf))
		}
		// A restore as a new VM, from the point's form.
		step(t, "point", cd.Navigate(api.base+"/ui/#/point?vm=web&point=latest"), cd.WaitVisible(cd.CSS("#view form")),
			cd.SendKeys(cd.CSS(`#view form input[aria-label="Name of the new VM"]`), "web-restored"),
			cd.Click(cd.CSS(`#view form button[type=submit]`)))
		waitJS(t, "the confirmation", `document.querySelector("#confirm").open`)
		step(t, "confirm", cd.Click(cd.CSS("#confirmok")))
		waitJS(t, "the restore's notice", `!document.querySelector("#notice").hidden && document.querySelector("#notice").textContent.includes("restore-")`)
		waitJS(t, "the restore ok", `[...document.querySelectorAll("#jobs tbody tr")].some(r => r.cells.length === 8 && r.cells[3].textContent === "web-restored" && r.cells[4].textContent === "ok")`)
	})

	t.Run("focus kept across polls", func(t *testing.T) {
		step(t, "dashboard", cd.Navigate(api.base+"/ui/#/"))
		waitJS(t, "the dashboard", `!!document.querySelector("#dashboard")`)
		first := js(t, `document.querySelector("#refreshed").textContent`)
		step(t, "focus", cd.Focus(cd.CSS("#dashboard button")))
		waitJS(t, "a poll", fmt.Sprintf(`document.querySelector("#refreshed").textContent !== %q`, first))
		if got := js(t, `document.activeElement.textContent`); got != "Verify now" {
			t.Errorf("after a poll the focus is on %q, want Verify now", got)
		}
	})

	t.Run("phone", func(t *testing.T) {
		defer step(t, "desktop", cd.EmulateViewport(1280, 900))
		step(t, "phone", cd.EmulateViewport(375, 700))
		for _, v := range []struct{ frag, ready string }{{"/", "#dashboard"}, {"/point?vm=web&point=latest", "#view form"}, {"/jobs", "#jobs"}} {
			frag := v.frag
			step(t, frag, cd.Navigate(api.base+"/ui/#"+frag), cd.WaitVisible(cd.CSS(v.ready)))
			// Every field has a name a screen reader can say.
			if u := js(t, `[...document.querySelectorAll("input")].filter(i => !i.labels.length && !i.getAttribute("aria-label")).map(i => i.id || i.placeholder).join(", ")`); u != "" {
				t.Errorf("%s has fields without a label: %s", frag, u)
			}
			if w := js(t, `String(document.documentElement.scrollWidth)`); w != "375" {
				t.Errorf("%s is %s px wide in a 375 px window (the page scrolls sideways); too wide: %s", frag, w,
					js(t, `[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 376 && !e.closest(".scroll")).slice(0, 6).map(e => e.tagName + "." + e.className + ": " + e.textContent.slice(0, 60)).join(" | ")`))
			}
		}
	})

	t.Run("serve stops and comes back", func(t *testing.T) {
		step(t, "dashboard", cd.Navigate(api.base+"/ui/#/"))
		waitJS(t, "the dashboard", `!!document.querySelector("#dashboard")`)
		stopServe()
		waitJS(t, "the outage banner", `!document.querySelector("#banner").hidden`)
		if b := js(t, `document.querySelector("#banner").textContent`); !strings.Contains(b, "does not answer") {
			t.Errorf("banner while serve is stopped: %q", b)
		}
		startServe()
		waitJS(t, "recovery", `document.querySelector("#banner").hidden && !!document.querySelector("#dashboard")`)
	})

	t.Run("logout", func(t *testing.T) {
		step(t, "vms", cd.Navigate(api.base+"/ui/#/vms"))
		waitJS(t, "VMs", `document.body.innerText.includes("centos")`)
		step(t, "log out", cd.Click(cd.CSS("#logout")))
		waitJS(t, "the login form", `!document.querySelector("#login").hidden && document.querySelector("#main").hidden`)
		step(t, "back", cd.NavigateBack())
		time.Sleep(200 * time.Millisecond)
		if js(t, `String(document.querySelector("#main").hidden) + " " + String(sessionStorage.length)`) != "true 0" {
			t.Errorf("after logging out, the back button shows data")
		}
	})
	if strings.Contains(logs.String(), tok) {
		t.Errorf("serve logged the token")
	}
}
