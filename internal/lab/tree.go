package lab

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// words make the generated text look like text (and compress like it).
var words = strings.Fields(`the backup of every virtual machine keeps a recovery
point with its disks and files restore copy mount snapshot change block tracking
cluster datastore host network service config log user report invoice draft
meeting notes project plan budget review release build deploy monitor alert`)

// text returns about n bytes of lines of words.
func text(rng *rand.Rand, n int) []byte {
	var b strings.Builder
	for b.Len() < n {
		k := 4 + rng.IntN(10)
		for i := 0; i < k; i++ {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// osTree is the initial content of a VM's system partition: a small
// OS-like tree of a few hundred files, deterministic for a VM number.
func osTree(vm string, n int) map[string][]byte {
	rng := rand.New(rand.NewPCG(uint64(n), 0x1ab))
	t := map[string][]byte{
		"/etc/hostname": []byte(vm + "\n"),
		"/etc/os-release": []byte(`PRETTY_NAME="Cairn Lab Linux 1.0"
NAME="Cairn Lab Linux"
VERSION_ID="1.0"
ID=cairnlab
HOME_URL="https://github.com/cairnbackup/cairn"
`),
		"/etc/hosts":           []byte("127.0.0.1\tlocalhost\n127.0.1.1\t" + vm + "\n"),
		"/etc/fstab":           []byte("PARTLABEL=system\t/\tvfat\tdefaults\t0\t1\n"),
		"/etc/passwd":          []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:Lab User:/home/user:/bin/sh\n"),
		"/etc/group":           []byte("root:x:0:\nuser:x:1000:\n"),
		"/etc/resolv.conf":     []byte("nameserver 127.0.0.53\n"),
		"/etc/ssh/sshd_config": []byte("PermitRootLogin no\nPasswordAuthentication no\n"),
		"/var/log/app.log":     []byte(fmt.Sprintf("boot %s: lab guest started\n", vm)),
		"/var/log/syslog":      text(rng, 8<<10),
		"/home/user/notes.txt": []byte("Notes of " + vm + ".\nThe guest writer changes the files under /home/user/docs.\n"),
		"/srv/www/index.html":  []byte("<html><body><h1>" + vm + "</h1></body></html>\n"),
		GenerationFile:         []byte("0\n"),
	}
	for i := 0; i < 40; i++ {
		t[fmt.Sprintf("/usr/share/doc/pkg-%02d/copyright", i)] = text(rng, 512+rng.IntN(2048))
		t[fmt.Sprintf("/usr/share/doc/pkg-%02d/changelog", i)] = text(rng, 1024+rng.IntN(4096))
	}
	for i := 0; i < 120; i++ {
		t[docPath(i)] = text(rng, 200+rng.IntN(12<<10))
	}
	for i := 0; i < 60; i++ {
		t[fmt.Sprintf("/home/user/photos/img-%03d.raw", i)] = randomBytes(rng, 4<<10+rng.IntN(60<<10))
	}
	t["/home/user/big/archive.bin"] = randomBytes(rng, 3<<20)
	return t
}

// dataTree is the content of a data disk: files that never change.
func dataTree(vm string, n int) map[string][]byte {
	rng := rand.New(rand.NewPCG(uint64(n), 0xda7a))
	t := map[string][]byte{
		"/README.txt": []byte("Data disk of " + vm + ". The guest writer never changes it.\n"),
	}
	for i := 0; i < 50; i++ {
		t[fmt.Sprintf("/reports/2026/report-%03d.csv", i)] = text(rng, 1024+rng.IntN(8<<10))
	}
	t["/db/data.bin"] = randomBytes(rng, 2<<20)
	return t
}

// ext4Tree is the content of a data disk's ext4 partition.
func ext4Tree(vm string, n int) map[string][]byte {
	rng := rand.New(rand.NewPCG(uint64(n), 0xe74))
	t := map[string][]byte{
		"/etc/app.conf": []byte("# " + vm + "\nlisten = 0.0.0.0:8080\nworkers = 4\n"),
	}
	for i := 0; i < 20; i++ {
		t[fmt.Sprintf("/var/lib/db/table-%02d.dat", i)] = randomBytes(rng, 1<<10+rng.IntN(64<<10))
	}
	for i := 0; i < 10; i++ {
		t[fmt.Sprintf("/log/app-%02d.log", i)] = text(rng, 2<<10+rng.IntN(8<<10))
	}
	return t
}

// docPath names the i-th document the guest writer plays with.
func docPath(i int) string { return fmt.Sprintf("/home/user/docs/doc-%04d.txt", i) }

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}
