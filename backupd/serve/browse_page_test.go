package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/backupd"
	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/ldmfixture"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// spoolEntries is the size of the large directory of the paging fixture:
// more than the largest page, as a mail spool or a cache directory.
const spoolEntries = 12000

// pagingFixture is a repository with VM "spool", whose disk sda is an
// ext4 filesystem made by mkfs.ext4 -d (no partition table) holding
// /big with spoolEntries files m00000... and /mixed with names of mixed
// case; and VM "win", two MBR dynamic disks (LDM database of
// internal/ldmfixture) with volume Span, spanned over both and holding
// an ext4 tree, and volume Stripe, striped over both and holding an
// NTFS made by mkntfs with a file copied in by ntfscp.
type pagingFixture struct {
	repo    string
	mixed   []string
	spanSrc string
	ntfsMsg []byte
}

func buildPagingFixture(t *testing.T) pagingFixture {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mkntfs", "ntfscp")
	dir := t.TempDir()
	f := pagingFixture{repo: filepath.Join(dir, "repo"), spanSrc: filepath.Join(dir, "spansrc"),
		mixed:   []string{"ALPHABET", "Alpha.TXT", "alpha.txt", "beta", "gamma-alpha"},
		ntfsMsg: []byte("a file of an NTFS on a striped dynamic volume\n")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	sh := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	src := filepath.Join(dir, "src")
	must(os.MkdirAll(filepath.Join(src, "big"), 0o755))
	for i := range spoolEntries {
		must(os.WriteFile(filepath.Join(src, "big", fmt.Sprintf("m%05d", i)), nil, 0o644))
	}
	must(os.MkdirAll(filepath.Join(src, "mixed"), 0o755))
	for i, n := range f.mixed {
		must(os.WriteFile(filepath.Join(src, "mixed", n), []byte(strings.Repeat("x", i)), 0o644))
	}
	must(os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello\n"), 0o644))
	img := filepath.Join(dir, "sda.img")
	sh("mkfs.ext4", "-q", "-F", "-N", "13000", "-d", src, img, "48M")

	// win: Span (ext4) over both disks, Stripe (NTFS) striped over both.
	vols := []ldmfixture.Volume{
		{Name: "Span", Size: 24 << 20, Comps: []ldmfixture.Component{{Parts: []ldmfixture.Part{
			{Disk: 0, Start: 0, Size: 16 << 20}, {Disk: 1, Start: 0, Size: 8 << 20, VolOffset: 16 << 20}}}}},
		{Name: "Stripe", Size: 16 << 20, Comps: []ldmfixture.Component{{Striped: true, Stripe: 64 << 10, Parts: []ldmfixture.Part{
			{Disk: 0, Start: 16 << 20, Size: 8 << 20, Index: 0}, {Disk: 1, Start: 8 << 20, Size: 8 << 20, Index: 1}}}}},
	}
	imgs := ldmfixture.Build([]int64{40 << 20, 32 << 20}, vols)
	must(os.MkdirAll(filepath.Join(f.spanSrc, "Users", "alice"), 0o755))
	must(os.WriteFile(filepath.Join(f.spanSrc, "Users", "alice", "notes.txt"), []byte("spanned notes\n"), 0o644))
	spanImg := filepath.Join(dir, "span.img")
	sh("mkfs.ext4", "-q", "-F", "-d", f.spanSrc, spanImg, "24M")
	ntfsImg := filepath.Join(dir, "stripe.img")
	must(os.WriteFile(ntfsImg, nil, 0o644))
	must(os.Truncate(ntfsImg, 16<<20))
	sh("mkntfs", "-q", "-Q", "-F", "-L", "stripe", ntfsImg)
	msg := filepath.Join(dir, "readme.txt")
	must(os.WriteFile(msg, f.ntfsMsg, 0o644))
	sh("ntfscp", "-q", ntfsImg, msg, "readme.txt")
	for i, p := range []string{spanImg, ntfsImg} {
		data, err := os.ReadFile(p)
		must(err)
		ldmfixture.Place(imgs, vols[i], data)
	}
	var winDisks []backupd.ImportDisk
	for i, b := range imgs {
		p := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		must(os.WriteFile(p, b, 0o644))
		winDisks = append(winDisks, backupd.ImportDisk{Name: fmt.Sprintf("disk%d", i), Source: p})
	}

	ctx := context.Background()
	must(blockmap.Init(ctx, f.repo, blockmap.InitOptions{}))
	repo, err := blockmap.Open(ctx, f.repo, blockmap.Options{})
	must(err)
	defer repo.Close()
	_, err = backupd.Import(ctx, repo, "spool", []backupd.ImportDisk{{Name: "sda", Source: img}}, backupd.ImportOptions{})
	must(err)
	_, err = backupd.Import(ctx, repo, "win", winDisks, backupd.ImportOptions{})
	must(err)
	return f
}

// files GETs a files answer, failing the test unless it is 200.
func (a *apiServer) files(t *testing.T, vm, fs, path string, q url.Values) (FilesResponse, int) {
	t.Helper()
	if q == nil {
		q = url.Values{}
	}
	q.Set("fs", fs)
	q.Set("path", path)
	code, body := a.do(t, http.MethodGet, "/api/v1/points/"+vm+"/latest/files?"+q.Encode(), "", nil)
	var fr FilesResponse
	if code != http.StatusOK || json.Unmarshal([]byte(body), &fr) != nil {
		t.Fatalf("files %s %s %v: %d %s", vm, path, q, code, body)
	}
	return fr, len(body)
}

// shortNames is at most the first 5 names of es, for a failure message.
func shortNames(es []FileEntry) string {
	ns := namesOf(es)
	if len(ns) > 5 {
		return fmt.Sprintf("%v... (%d names)", ns[:5], len(ns))
	}
	return fmt.Sprint(ns)
}

func namesOf(es []FileEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

// TestConsoleFilesPaging: GET .../files answers a directory of 12,000
// entries a page at a time (default 1000, at most 10,000), pages
// through it with after= cursors without loss or repeat, filters
// case-insensitively across the whole directory, and answers a cursor
// past the end with an empty page; answer sizes stay bounded by the
// page. The same server lists and downloads from Windows dynamic
// (LDM) volumes.
func TestConsoleFilesPaging(t *testing.T) {
	f := buildPagingFixture(t)
	cfg, err := ParseConfig("cairn.yaml", []byte(fmt.Sprintf(browseConfig, f.repo)))
	if err != nil {
		t.Fatal(err)
	}
	a := runTestServer(t, f.repo, cfg, nil)
	var fss FilesystemsResponse
	if code, body := a.do(t, http.MethodGet, "/api/v1/points/spool/latest/filesystems", "", nil); code != http.StatusOK ||
		json.Unmarshal([]byte(body), &fss) != nil || len(fss.Filesystems) != 1 {
		t.Fatalf("spool's filesystems: %d %s", code, body)
	}
	fsName := fss.Filesystems[0].Name
	want := make([]string, spoolEntries)
	for i := range want {
		want[i] = fmt.Sprintf("m%05d", i)
	}

	t.Run("default page", func(t *testing.T) {
		fr, n := a.files(t, "spool", fsName, "/big", nil)
		if len(fr.Entries) != DefaultFilesLimit || fr.Total != spoolEntries || fr.Matched != spoolEntries || fr.Offset != 0 ||
			fr.Limit != DefaultFilesLimit || fr.Next != want[DefaultFilesLimit-1] {
			t.Fatalf("/big without limit: %d entries, total %d matched %d offset %d limit %d next %q",
				len(fr.Entries), fr.Total, fr.Matched, fr.Offset, fr.Limit, fr.Next)
		}
		if !slices.Equal(namesOf(fr.Entries), want[:DefaultFilesLimit]) {
			t.Errorf("the first page is not m00000..m00999 in order")
		}
		if e := fr.Entries[7]; e.Kind != "file" || e.Size != 0 || e.Mode != "-rw-r--r--" || e.UID == nil {
			t.Errorf("entry %+v: want a file with its attributes", e)
		}
		// 1000 entries of ~195 bytes each: bounded by the page, not the
		// directory (the whole of /big answered at once was 2.3 MB).
		t.Logf("a page of %d of %d entries: %d bytes", DefaultFilesLimit, spoolEntries, n)
		if n > 300*DefaultFilesLimit {
			t.Errorf("a page of %d entries is %d bytes", DefaultFilesLimit, n)
		}
	})

	t.Run("walk by cursor", func(t *testing.T) {
		var got []string
		after, pages := "", 0
		for {
			q := url.Values{"limit": {"5000"}}
			if after != "" {
				q.Set("after", after)
			}
			fr, _ := a.files(t, "spool", fsName, "/big", q)
			pages++
			if fr.Offset != len(got) || fr.Total != spoolEntries {
				t.Fatalf("page %d: offset %d total %d after %d names", pages, fr.Offset, fr.Total, len(got))
			}
			got = append(got, namesOf(fr.Entries)...)
			if fr.Next == "" {
				break
			}
			if pages > 10 {
				t.Fatalf("no end after %d pages", pages)
			}
			after = fr.Next
		}
		if pages != 3 || !slices.Equal(got, want) {
			t.Fatalf("%d pages, %d names: want 3 pages of m00000..m11999 in order", pages, len(got))
		}
	})

	t.Run("limits", func(t *testing.T) {
		fr, n := a.files(t, "spool", fsName, "/big", url.Values{"limit": {"1000000"}})
		if len(fr.Entries) != MaxFilesLimit || fr.Limit != MaxFilesLimit || fr.Next != want[MaxFilesLimit-1] {
			t.Errorf("limit=1000000: %d entries, limit %d, next %q; want the most, %d", len(fr.Entries), fr.Limit, fr.Next, MaxFilesLimit)
		}
		if n > 300*MaxFilesLimit {
			t.Errorf("the largest page is %d bytes", n)
		}
		fr, _ = a.files(t, "spool", fsName, "/big", url.Values{"limit": {"1"}, "after": {"m05000"}})
		if !slices.Equal(namesOf(fr.Entries), []string{"m05001"}) || fr.Offset != 5001 || fr.Next != "m05001" {
			t.Errorf("limit=1 after=m05000: %v offset %d next %q", shortNames(fr.Entries), fr.Offset, fr.Next)
		}
		for _, q := range []string{"limit=0", "limit=-3", "limit=many", "after=" + strings.Repeat("a", 2000)} {
			code, body := a.do(t, http.MethodGet, "/api/v1/points/spool/latest/files?fs="+url.QueryEscape(fsName)+"&path=/big&"+q, "", nil)
			if code != http.StatusBadRequest || !strings.Contains(body, "give") {
				t.Errorf("%s: %d %s, want 400 with advice", q, code, body)
			}
		}
	})

	t.Run("past the end", func(t *testing.T) {
		for _, after := range []string{"m11999", "zzz"} {
			fr, _ := a.files(t, "spool", fsName, "/big", url.Values{"after": {after}})
			if len(fr.Entries) != 0 || fr.Next != "" || fr.Offset != spoolEntries || fr.Total != spoolEntries {
				t.Errorf("after=%s: %d entries, next %q, offset %d", after, len(fr.Entries), fr.Next, fr.Offset)
			}
		}
		// The last page ends exactly at the directory's end: no next.
		fr, _ := a.files(t, "spool", fsName, "/big", url.Values{"after": {"m10999"}, "limit": {"1000"}})
		if len(fr.Entries) != 1000 || fr.Next != "" || fr.Entries[999].Name != "m11999" {
			t.Errorf("after=m10999 limit=1000: %d entries, next %q", len(fr.Entries), fr.Next)
		}
	})

	t.Run("filter", func(t *testing.T) {
		fr, _ := a.files(t, "spool", fsName, "/big", url.Values{"filter": {"M1199"}})
		if !slices.Equal(namesOf(fr.Entries), want[11990:]) || fr.Matched != 10 || fr.Total != spoolEntries || fr.Next != "" {
			t.Errorf("filter=M1199: %v matched %d total %d next %q", shortNames(fr.Entries), fr.Matched, fr.Total, fr.Next)
		}
		// Case-insensitive, in byte order, paged with the filter.
		fr, _ = a.files(t, "spool", fsName, "/mixed", url.Values{"filter": {"aLpHa"}, "limit": {"2"}})
		if !slices.Equal(namesOf(fr.Entries), []string{"ALPHABET", "Alpha.TXT"}) || fr.Matched != 4 || fr.Total != 5 || fr.Next != "Alpha.TXT" {
			t.Fatalf("filter=aLpHa limit=2: %v matched %d total %d next %q", shortNames(fr.Entries), fr.Matched, fr.Total, fr.Next)
		}
		fr, _ = a.files(t, "spool", fsName, "/mixed", url.Values{"filter": {"aLpHa"}, "limit": {"2"}, "after": {fr.Next}})
		if !slices.Equal(namesOf(fr.Entries), []string{"alpha.txt", "gamma-alpha"}) || fr.Offset != 2 || fr.Next != "" {
			t.Errorf("the second page: %v offset %d next %q", shortNames(fr.Entries), fr.Offset, fr.Next)
		}
		if e := fr.Entries[1]; e.Size != 4 {
			t.Errorf("gamma-alpha's size %d, want 4", e.Size)
		}
		fr, _ = a.files(t, "spool", fsName, "/big", url.Values{"filter": {"nothing-like-this"}})
		if len(fr.Entries) != 0 || fr.Matched != 0 || fr.Total != spoolEntries {
			t.Errorf("a filter matching nothing: %d entries, matched %d", len(fr.Entries), fr.Matched)
		}
	})

	t.Run("a file", func(t *testing.T) {
		fr, _ := a.files(t, "spool", fsName, "/hello.txt", url.Values{"limit": {"1"}})
		if fr.Entry.Kind != "file" || fr.Entry.Size != 6 || len(fr.Entries) != 0 || fr.Total != 0 {
			t.Errorf("/hello.txt: %+v", fr)
		}
	})

	t.Run("ldm", func(t *testing.T) {
		var fss FilesystemsResponse
		code, body := a.do(t, http.MethodGet, "/api/v1/points/win/latest/filesystems", "", nil)
		if code != http.StatusOK || json.Unmarshal([]byte(body), &fss) != nil {
			t.Fatalf("win's filesystems: %d %s", code, body)
		}
		types := map[string]string{}
		for _, f := range fss.Filesystems {
			if f.Error == "" {
				types[f.Name] = f.Type
			}
		}
		if types["ldm/Span"] != "ext4" || types["ldm/Stripe"] != "ntfs" {
			t.Fatalf("win's filesystems %s: want ldm/Span ext4 and ldm/Stripe ntfs", body)
		}
		fr, _ := a.files(t, "win", "ldm/Span", "/Users/alice", nil)
		if fr.Filesystem != "ldm/Span" || !slices.Equal(namesOf(fr.Entries), []string{"notes.txt"}) || fr.Entries[0].Size != 14 {
			t.Errorf("ldm/Span /Users/alice: %+v", fr)
		}
		fr, _ = a.files(t, "win", "ldm/Stripe", "/", url.Values{"filter": {"README"}})
		if len(fr.Entries) != 1 || fr.Entries[0].Name != "readme.txt" || fr.Entries[0].UID != nil ||
			fr.Entries[0].Size != int64(len(f.ntfsMsg)) {
			t.Fatalf("ldm/Stripe / filter=README: %+v", fr)
		}
		// Its bytes, through a download ticket.
		tk := a.mint(t, DownloadRequest{VM: "win", FS: "ldm/Stripe", Path: "/readme.txt"})
		resp, err := http.Get(a.base + tk.URL)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != string(f.ntfsMsg) {
			t.Errorf("download of ldm/Stripe /readme.txt: %d %q", resp.StatusCode, got)
		}
		tk = a.mint(t, DownloadRequest{VM: "win", FS: "ldm/Span", Path: "/Users"})
		resp, err = http.Get(a.base + tk.URL)
		if err != nil {
			t.Fatal(err)
		}
		tarball, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(tarball), "spanned notes") {
			t.Errorf("tar of ldm/Span /Users: %d, %d bytes", resp.StatusCode, len(tarball))
		}
	})
}
