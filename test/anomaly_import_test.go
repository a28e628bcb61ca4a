package test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/backupd/anomaly"
	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/internal/testutil"
)

// guestText is n bytes of source-code-like text, different for each seed.
func guestText(seed uint64, n int) []byte {
	words := strings.Fields("func return if err != nil { } package import the of a to and for backup disk block point " +
		"repository while struct int64 string := range len append fmt.Errorf context ctx // comment with some prose")
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		switch r.IntN(12) {
		case 0:
			b.WriteString("\n\t")
		case 1:
			fmt.Fprintf(&b, " %d", r.IntN(100000))
		default:
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// guestDisk is an ext4 image made by mkfs.ext4 -d, changed between imports
// through a kernel loop mount.
type guestDisk struct {
	img, mnt string
}

func newGuestDisk(t *testing.T, dir string, size string, fill func(root string)) *guestDisk {
	t.Helper()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	fill(src)
	g := &guestDisk{img: filepath.Join(dir, "disk.img"), mnt: filepath.Join(dir, "mnt")}
	sh(t, "truncate", "-s", size, g.img)
	sh(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", "-d", src, g.img)
	if err := os.MkdirAll(g.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return g
}

// change mounts the image, runs edit on its root, and unmounts (the
// filesystem is clean and every write is in the image afterwards).
func (g *guestDisk) change(t *testing.T, edit func(root string)) {
	t.Helper()
	sh(t, "mount", "-o", "loop,discard", g.img, g.mnt)
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", g.mnt).Run()
		}
	}()
	edit(g.mnt)
	sh(t, "sync", "-f", g.mnt)
	sh(t, "umount", g.mnt)
	mounted = false
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// encryptInPlace overwrites the file with AES-CTR of its content, same
// size, without truncating: what ransomware that encrypts in place does.
func encryptInPlace(t *testing.T, path string, key []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, aes.BlockSize)
	cipher.NewCTR(block, iv).XORKeyStream(data, data)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

type anomalyPoint struct {
	ID      string `json:"id"`
	Gen     uint32 `json:"generation"`
	Verdict *struct {
		Status           string `json:"status"`
		Reason           string `json:"reason"`
		WrittenBytes     int64  `json:"written_bytes"`
		HighEntropyBytes int64  `json:"high_entropy_bytes"`
	} `json:"verdict"`
	Disks []struct {
		Content *anomaly.Figures `json:"content"`
	} `json:"disks"`
	Acknowledged *anomaly.Ack `json:"acknowledged"`
}

func pointsOf(t *testing.T, repo, vm string) []anomalyPoint {
	t.Helper()
	r := runCairn(t, nil, "--repo", repo, "points", "--vm", vm, "--json")
	if r.code != 0 {
		t.Fatalf("cairn points: %d %s", r.code, r.stderr)
	}
	var out struct {
		VMs []struct {
			Points []anomalyPoint `json:"points"`
		} `json:"vms"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.VMs) != 1 {
		t.Fatalf("cairn points --json: %v\n%s", err, r.stdout)
	}
	return out.VMs[0].Points
}

// TestSuspiciousChangesImport backs up two real ext4 guests through
// cairn import over several generations: one of text files with ordinary
// edits and then a ransomware step that encrypts most files in place
// (AES-CTR, same size), one that writes fresh random files every day.
// Only the ransomware point is flagged, with a reason; zeroed and trimmed
// areas do not count; prune keeps the last clean point until the alarm is
// acknowledged.
func TestSuspiciousChangesImport(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTools(t, "mkfs.ext4", "mount", "umount", "truncate", "fstrim")
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if r := runCairn(t, nil, "--repo", repo, "init"); r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	day0 := time.Now().Add(-30 * 24 * time.Hour).UTC().Truncate(time.Hour)
	imp := func(vm string, g *guestDisk, day int) cairnResult {
		t.Helper()
		r := runCairn(t, nil, "--repo", repo, "import", "--vm", vm, "--disk", "d0", "--time", day0.Add(time.Duration(day)*24*time.Hour).Format(time.RFC3339),
			"--suspicious-min-bytes", "8MiB", g.img)
		if r.code != 0 {
			t.Fatalf("import %s day %d: %d %s", vm, day, r.code, r.stderr)
		}
		return r
	}

	// The office VM: 160 text files of 128 KiB (20 MiB).
	office := newGuestDisk(t, filepath.Join(dir, "office"), "96M", func(root string) {
		for i := 0; i < 160; i++ {
			writeFile(t, filepath.Join(root, fmt.Sprintf("src%03d.go", i)), guestText(uint64(i), 128<<10))
		}
	})
	// The media VM writes 12 MiB of new random files every day.
	media := newGuestDisk(t, filepath.Join(dir, "media"), "160M", func(root string) {
		writeFile(t, filepath.Join(root, "README"), guestText(999, 4096))
	})
	day := 0
	for ; day < 5; day++ {
		if day > 0 {
			office.change(t, func(root string) {
				for i := 0; i < 6; i++ { // an ordinary day: a few files edited
					n := (day*7 + i*13) % 160
					writeFile(t, filepath.Join(root, fmt.Sprintf("src%03d.go", n)), guestText(uint64(1000*day+n), 128<<10))
				}
			})
		}
		media.change(t, func(root string) {
			for i := 0; i < 3; i++ {
				b := make([]byte, 4<<20)
				rand.Read(b)
				writeFile(t, filepath.Join(root, fmt.Sprintf("clip-%d-%d.mp4", day, i)), b)
			}
		})
		imp("office", office, day)
		if r := imp("media", media, day); strings.Contains(r.stderr, "suspicious") {
			t.Errorf("media day %d flagged: %s", day, r.stderr)
		}
	}
	// A day of zeros and trimmed space: 24 MiB of zeros written, the
	// day-0 files of the media VM deleted and trimmed.
	office.change(t, func(root string) {
		writeFile(t, filepath.Join(root, "zeros.bin"), make([]byte, 24<<20))
	})
	media.change(t, func(root string) {
		for i := 0; i < 3; i++ {
			os.Remove(filepath.Join(root, fmt.Sprintf("clip-0-%d.mp4", i)))
		}
		sh(t, "fstrim", root)
	})
	imp("office", office, day)
	imp("media", media, day)
	day++
	// Ransomware: 150 of the 160 files encrypted in place.
	key := make([]byte, 32)
	rand.Read(key)
	office.change(t, func(root string) {
		for i := 0; i < 150; i++ {
			encryptInPlace(t, filepath.Join(root, fmt.Sprintf("src%03d.go", i)), key)
		}
	})
	r := imp("office", office, day)
	if !strings.Contains(r.stderr, "suspicious changes") || !strings.Contains(r.stderr, "looks encrypted") {
		t.Errorf("the ransomware import did not warn: %q", r.stderr)
	}
	media.change(t, func(root string) {
		for i := 0; i < 3; i++ {
			b := make([]byte, 4<<20)
			rand.Read(b)
			writeFile(t, filepath.Join(root, fmt.Sprintf("clip-late-%d.mp4", i)), b)
		}
	})
	imp("media", media, day)

	ops := pointsOf(t, repo, "office")
	if len(ops) != 7 {
		t.Fatalf("office has %d points, want 7", len(ops))
	}
	for i, p := range ops {
		if p.Verdict == nil {
			t.Fatalf("office point %d has no verdict", i)
		}
		t.Logf("office %d: %s: %s", i, p.Verdict.Status, p.Verdict.Reason)
		want := anomaly.Normal
		switch {
		case i < 4:
			want = anomaly.NoBaseline // the first import, then fewer than 3 earlier points with figures
		case i == 6:
			want = anomaly.Suspicious
		}
		if p.Verdict.Status != want {
			t.Errorf("office point %d: %s (%s), want %s", i, p.Verdict.Status, p.Verdict.Reason, want)
		}
	}
	zeroDay, ransom := ops[5].Verdict, ops[6].Verdict
	if zeroDay.WrittenBytes > 4<<20 {
		t.Errorf("the day that wrote 24 MiB of zeros counts %d bytes written: zeros must not count", zeroDay.WrittenBytes)
	}
	if ransom.HighEntropyBytes < 15<<20 || !strings.Contains(ransom.Reason, "this VM's usual") {
		t.Errorf("ransomware point: %d high-entropy bytes, reason %q", ransom.HighEntropyBytes, ransom.Reason)
	}
	mps := pointsOf(t, repo, "media")
	for i, p := range mps {
		t.Logf("media %d: %s: %s", i, p.Verdict.Status, p.Verdict.Reason)
		if p.Verdict.Status == anomaly.Suspicious {
			t.Errorf("media point %d flagged: %s", i, p.Verdict.Reason)
		}
		if i >= 4 && i != 5 && p.Verdict.Status != anomaly.Normal {
			t.Errorf("media point %d: %s, want normal after its baseline", i, p.Verdict.Status)
		}
		// Without the baseline its changes would pass the absolute floors.
		if i >= 1 && i != 5 && (p.Verdict.HighEntropyBytes < 8<<20 || float64(p.Verdict.HighEntropyBytes) < 0.5*float64(p.Verdict.WrittenBytes)) {
			t.Errorf("media point %d: %d of %d bytes look encrypted: the fixture should pass the floors", i, p.Verdict.HighEntropyBytes, p.Verdict.WrittenBytes)
		}
	}
	if trimDay := mps[5].Verdict; trimDay.WrittenBytes > 4<<20 {
		t.Errorf("the day that deleted and trimmed 12 MiB counts %d bytes written", trimDay.WrittenBytes)
	}

	// The table marks it and says why, and which point is clean.
	tab := runCairn(t, nil, "--repo", repo, "points", "--vm", "office")
	if !strings.Contains(tab.stdout, "SUSPICIOUS") || !strings.Contains(tab.stdout, "last clean point of office: "+ops[5].ID) {
		t.Errorf("cairn points does not mark the point or name the clean one:\n%s", tab.stdout)
	}

	// The console marks the VM on the dashboard and the point in its list.
	t.Run("console", func(t *testing.T) {
		chromium := requireChromium(t)
		api, _, _ := consoleServe(t, buildCairn(t), repo)
		tok, err := serve.ReadToken(repo)
		if err != nil {
			t.Fatal(err)
		}
		render := consoleRenderer(chromium, api.base)
		login := "token=" + url.QueryEscape(tok)
		if dom := render(t, login); !strings.Contains(dom, `title="suspicious changes in `+ops[6].ID+`; last clean point `+ops[5].ID+`"> suspicious</span>`) {
			t.Errorf("the dashboard does not mark office:\n%s", dom)
		}
		dom := render(t, login+"&next="+url.QueryEscape("/vm?name=office"))
		if !strings.Contains(dom, `<span class="bad" title="`+ransom.Reason+`"> suspicious</span>`) {
			t.Errorf("the points of office do not mark %s:\n%s", ops[6].ID, dom)
		}
		if strings.Count(dom, "> suspicious</span>") != 1 {
			t.Errorf("more than one point of office is marked:\n%s", dom)
		}
	})

	// Retention: keep-last 1 would delete everything but the encrypted point.
	pr := runCairn(t, nil, "--repo", repo, "prune", "--vm", "office", "--keep-last", "1")
	if pr.code != 0 || !strings.Contains(pr.stdout, "kept office "+ops[5].ID+": last clean point") {
		t.Fatalf("prune: %d %s %s", pr.code, pr.stdout, pr.stderr)
	}
	left := pointsOf(t, repo, "office")
	if len(left) != 2 || left[0].ID != ops[5].ID || left[1].ID != ops[6].ID {
		t.Fatalf("after prune office has %v, want the clean point %s and the suspicious %s", left, ops[5].ID, ops[6].ID)
	}
	// Acknowledging a normal point is refused; the suspicious one releases it.
	if r := runCairn(t, nil, "--repo", repo, "points", "ack", "--vm", "office", "--point", ops[5].ID); r.code == 0 || !strings.Contains(r.stderr, "not flagged") {
		t.Errorf("ack of a normal point: %d %s", r.code, r.stderr)
	}
	if r := runCairn(t, nil, "--repo", repo, "points", "ack", "--vm", "office", "--point", ops[6].ID, "--note", "test"); r.code != 0 {
		t.Fatalf("ack: %d %s", r.code, r.stderr)
	}
	if left := pointsOf(t, repo, "office"); left[1].Acknowledged == nil || left[1].Acknowledged.Note != "test" {
		t.Errorf("points --json does not show the acknowledgement: %+v", left[1])
	}
	// GET /api/v1/points says acknowledged too, and the console shows
	// "acknowledged" instead of the badge.
	t.Run("console acknowledged", func(t *testing.T) {
		chromium := requireChromium(t)
		api, _, _ := consoleServe(t, buildCairn(t), repo)
		var pts []struct {
			ID           string       `json:"id"`
			Acknowledged *anomaly.Ack `json:"acknowledged"`
		}
		if !api.getJSON("/api/v1/points?vm=office", &pts) || len(pts) != 2 {
			t.Fatalf("GET /api/v1/points?vm=office: %+v", pts)
		}
		for _, p := range pts {
			if (p.Acknowledged != nil) != (p.ID == ops[6].ID) || p.Acknowledged != nil && p.Acknowledged.Note != "test" {
				t.Errorf("GET /api/v1/points: point %s acknowledged %+v (only %s was)", p.ID, p.Acknowledged, ops[6].ID)
			}
		}
		tok, err := serve.ReadToken(repo)
		if err != nil {
			t.Fatal(err)
		}
		dom := consoleRenderer(chromium, api.base)(t, "token="+url.QueryEscape(tok)+"&next="+url.QueryEscape("/vm?name=office"))
		if strings.Contains(dom, "> suspicious</span>") || strings.Count(dom, "> acknowledged</span>") != 1 {
			t.Errorf("the points of office after the ack: want %s marked acknowledged, no suspicious badge:\n%s", ops[6].ID, dom)
		}
	})
	pr = runCairn(t, nil, "--repo", repo, "prune", "--vm", "office", "--keep-last", "1")
	if pr.code != 0 || strings.Contains(pr.stdout, "kept office") {
		t.Fatalf("prune after ack: %d %s %s", pr.code, pr.stdout, pr.stderr)
	}
	if left := pointsOf(t, repo, "office"); len(left) != 1 || left[0].ID != ops[6].ID {
		t.Fatalf("after ack and prune office has %v, want only %s", left, ops[6].ID)
	}
	// The acknowledgement file is a repository file like the others.
	var vr struct {
		LooseModes []string `json:"loose_modes"`
	}
	if r := runCairn(t, nil, "--repo", repo, "verify", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &vr) != nil || len(vr.LooseModes) != 0 {
		t.Errorf("verify: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
