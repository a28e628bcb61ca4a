package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// XattrTreeOptions chooses which extended attribute forms XattrTree makes.
type XattrTreeOptions struct {
	// Huge adds values larger than a filesystem block (ext4 needs the
	// ea_inode feature for them; XFS keeps them in remote blocks).
	Huge bool
	// Many adds files with dozens and hundreds of attributes (XFS leaf and
	// node forms and remote values; too many for ext4's one xattr block).
	Many bool
}

// XattrTree fills root, a directory on a kernel mount of a real
// filesystem, with files carrying extended attributes and POSIX ACLs set by
// the real tools (setfattr, setfacl, setcap): user., trusted. and
// security. names, a raw SELinux label, a file capability, access and
// default ACLs, mode 0000 files and directories, values of many sizes.
func XattrTree(t testing.TB, root string, o XattrTreeOptions) {
	t.Helper()
	RequireTools(t, "setfattr", "setfacl", "setcap")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			cmd := strings.Join(append([]string{name}, args...), " ")
			if len(cmd) > 200 {
				cmd = cmd[:200] + "..."
			}
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	file := func(rel string, mode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p(rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p(rel), []byte("content of "+rel+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p(rel), mode); err != nil {
			t.Fatal(err)
		}
		return p(rel)
	}
	hexval := func(n int, seed byte) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7) + seed
		}
		return fmt.Sprintf("0x%x", b)
	}

	f := file("small", 0o644)
	run("setfattr", "-n", "user.comment", "-v", "hello", f)
	run("setfattr", "-n", "user.empty", f)
	run("setfattr", "-n", "trusted.secret", "-v", "0xdeadbeef", f)
	run("setfattr", "-n", "security.selinux", "-v", "system_u:object_r:bin_t:s0\\000", f)

	ping := file("bin/ping", 0o755)
	run("setcap", "cap_net_raw+ep", ping)
	run("setfattr", "-n", "security.selinux", "-v", "system_u:object_r:ping_exec_t:s0\\000", ping)

	acl := file("acl/file", 0o640)
	run("setfacl", "-m", "u:1234:rwx,g:55:r-x,u:0:r--", acl)
	if err := os.MkdirAll(p("acl/dir/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	run("setfacl", "-m", "u:1001:rwx", p("acl/dir"))
	run("setfacl", "-d", "-m", "u:1001:rwx,g:2002:r-x,o::---", p("acl/dir"))
	file("acl/dir/inherits", 0o644)
	run("setfacl", "-d", "-m", "g:7:rw-", p("acl/dir/sub"))

	file("mode0000", 0)
	if err := os.Mkdir(p("dir0000"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p("dir0000"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("small", p("link")); err != nil {
		t.Fatal(err)
	}
	run("setfattr", "-h", "-n", "trusted.onlink", "-v", "symlink-attr", p("link"))

	medium := file("medium", 0o644)
	for i := 0; i < 3; i++ {
		run("setfattr", "-n", fmt.Sprintf("user.medium%d", i), "-v", hexval(900, byte(i)), medium)
	}
	if o.Huge {
		big := file("huge", 0o644)
		run("setfattr", "-n", "user.big8k", "-v", hexval(8000, 1), big)
		run("setfattr", "-n", "user.big60k", "-v", hexval(60000, 2), big)
		run("setfattr", "-n", "trusted.small", "-v", "x", big)
	}
	if o.Many {
		leaf := file("many/leaf", 0o644)
		for i := 0; i < 40; i++ {
			run("setfattr", "-n", fmt.Sprintf("user.leaf-attribute-%03d", i), "-v", hexval(60, byte(i)), leaf)
		}
		node := file("many/node", 0o644)
		args := []string{}
		for i := 0; i < 400; i++ {
			args = append(args, fmt.Sprintf("setfattr -n user.node-attribute-with-a-long-name-%04d -v %s %s", i, hexval(40, byte(i)), node))
		}
		run("sh", "-c", strings.Join(args, " && "))
		remote := file("many/remote", 0o644)
		run("setfattr", "-n", "user.remote", "-v", hexval(3000, 9), remote)
		run("setfattr", "-n", "user.local", "-v", "short", remote)
	}
}
