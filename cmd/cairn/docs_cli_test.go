package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// cliIndex is every command path of cairn ("restore vm", "serve token
// add") with the flags it takes, as urfave/cli would parse them.
type cliIndex struct {
	global   map[string]bool
	commands map[string]map[string]bool // path -> flag names (without --)
	groups   map[string]bool            // paths that only hold subcommands (no flags of their own)
	anyFlag  map[string]bool
}

func newCLIIndex() *cliIndex {
	app := newApp()
	ix := &cliIndex{global: map[string]bool{"help": true, "h": true, "version": true}, commands: map[string]map[string]bool{}, groups: map[string]bool{}, anyFlag: map[string]bool{}}
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			ix.global[n] = true
			ix.anyFlag[n] = true
		}
	}
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			for _, name := range c.Names() {
				path := strings.TrimSpace(prefix + " " + name)
				flags := map[string]bool{"help": true, "h": true}
				for _, f := range c.Flags {
					for _, n := range f.Names() {
						flags[n] = true
						ix.anyFlag[n] = true
					}
				}
				ix.commands[path] = flags
				ix.groups[path] = len(c.Subcommands) > 0 && len(c.Flags) == 0
				walk(path, c.Subcommands)
			}
		}
	}
	walk("", app.Commands)
	// cairn lab hands its flags to cairn-lab (SkipFlagParsing): take them
	// from that program's source, the one place they are declared.
	src, err := os.ReadFile("../cairn-lab/main.go")
	if err == nil {
		for _, m := range labFlagName.FindAllStringSubmatch(string(src), -1) {
			ix.commands["lab"][m[1]] = true
			ix.anyFlag[m[1]] = true
		}
	}
	return ix
}

var labFlagName = regexp.MustCompile(`cli\.\w+Flag\{Name: "([a-z][a-z0-9-]*)"`)

// docFiles are the pages an administrator reads: README.md and docs/*.md
// (performance.md is generated from the benchmarks' own sections).
func docFiles(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, "../../README.md")
	out := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(p, "../../")] = string(data)
	}
	return out
}

// codeText is the code of a Markdown page: each line of a fenced block
// (without its # comment) and each `span`.
func codeText(doc string) []string {
	var out []string
	var para []string // prose lines: a span may run over a line break
	spans := func() {
		parts := strings.Split(strings.Join(para, " "), "`")
		for i := 1; i < len(parts); i += 2 {
			out = append(out, parts[i])
		}
		para = para[:0]
	}
	inFence := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			spans()
			inFence = !inFence
			continue
		}
		if inFence {
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			out = append(out, line)
			continue
		}
		if strings.TrimSpace(line) == "" {
			spans()
			continue
		}
		para = append(para, line)
	}
	spans()
	return out
}

// shellSplit cuts a line of code where one shell command ends and the
// next begins (&&, ||, ;, |, $( ).
var shellSplit = regexp.MustCompile(`&&|\|\||;|\||\$\(`)

// cairnCommands are the cairn invocations of one piece of code: each
// shell command of it that starts with cairn (or $ cairn, sudo cairn,
// bin/cairn), as its arguments.
func cairnCommands(code string) [][]string {
	var out [][]string
	for _, cmd := range shellSplit.Split(code, -1) {
		f := strings.Fields(cmd)
		for len(f) > 0 && (f[0] == "$" || f[0] == "sudo" || strings.Contains(f[0], "=")) {
			f = f[1:]
		}
		if len(f) == 0 || (f[0] != "cairn" && !strings.HasSuffix(f[0], "/cairn")) {
			continue
		}
		out = append(out, f[1:])
	}
	return out
}

var (
	flagWord = regexp.MustCompile(`^--([a-z][a-z0-9-]*)`)
	cmdWord  = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	// anyFlagRef is a --flag anywhere in a page's code.
	anyFlagRef = regexp.MustCompile(`(?:^|[\s(\[\x60"'=,/|])--([a-z][a-z0-9-]*[a-z0-9])(-?\*)?`)
)

// globalValueFlags take a value as the next word.
var globalValueFlags = map[string]bool{"repo": true, "log-level": true}

// otherToolFlags are flags of other programs the docs show beside cairn
// (cp, nbdcopy, qemu-nbd, qemu-img, nbdkit, mdadm, rclone, aws...): allowed
// in a page's code, never after "cairn". Add one only for another tool.
var otherToolFlags = map[string]bool{
	"sparse": true, "flush": true, "persistent": true, "readonly": true, "tls": true, "filter": true,
	"add": true, "clear": true, "map": true, "examine": true, "update": true, "bwlimit": true,
	"object-lock-enabled-for-bucket": true, "dig-holes": true,
	// Proxmox VE's qm (docs/restore.md, Restore to KVM / libvirt)
	"memory": true, "sockets": true, "cores": true, "machine": true, "bios": true, "scsihw": true, "net0": true,
	"scsi0": true, "sata0": true, "boot": true, "serial0": true, "efidisk0": true, "ostype": true,
	"delete": true, // rsync (docs/filesystems.md, cairn diff)
}

// TestDocsNameRealCommandsAndFlags: every `cairn COMMAND ... --flag` in
// README.md and docs/*.md names a command cairn has and flags that command
// (or the global options) takes; every --flag a page's code shows is one of
// cairn's or an allowed flag of another tool. A renamed flag or command
// fails here instead of in an administrator's shell.
func TestDocsNameRealCommandsAndFlags(t *testing.T) {
	ix := newCLIIndex()
	for name, doc := range docFiles(t) {
		if name == "docs/performance.md" || name == "docs/performance-notes.md" {
			continue // benchmark reports: how tools were run, not how to run cairn
		}
		for _, code := range codeText(doc) {
			for _, args := range cairnCommands(code) {
				checkCairnCall(t, ix, name, args, code)
			}
			for _, m := range anyFlagRef.FindAllStringSubmatch(code, -1) {
				f := m[1]
				if m[2] != "" {
					continue // --keep-*: a family of flags
				}
				if !ix.anyFlag[f] && !ix.global[f] && !otherToolFlags[f] {
					t.Errorf("%s: --%s is no flag of cairn (nor an allowed flag of another tool): %q", name, f, code)
				}
			}
		}
	}
}

// checkCairnCall checks one "cairn ARGS..." of a page.
func checkCairnCall(t *testing.T, ix *cliIndex, doc string, args []string, code string) {
	t.Helper()
	i := 0
	// Global options before the command.
	for i < len(args) && strings.HasPrefix(args[i], "--") {
		f := flagWord.FindStringSubmatch(args[i])
		if f == nil {
			return
		}
		if !ix.global[f[1]] {
			t.Errorf("%s: %q: --%s is no global option of cairn", doc, code, f[1])
			return
		}
		if globalValueFlags[f[1]] && !strings.Contains(args[i], "=") {
			i++
		}
		i++
	}
	if i >= len(args) || !cmdWord.MatchString(args[i]) {
		return // "cairn" alone, cairn.yaml, a placeholder such as COMMAND
	}
	path := ""
	for i < len(args) && cmdWord.MatchString(args[i]) {
		next := strings.TrimSpace(path + " " + args[i])
		if _, ok := ix.commands[next]; !ok {
			break
		}
		path = next
		i++
	}
	if path == "" {
		if args[i] == "help" || strings.ToUpper(args[i]) == args[i] {
			return
		}
		t.Errorf("%s: %q: cairn has no command %q", doc, code, args[i])
		return
	}
	if ix.groups[path] && i < len(args) && cmdWord.MatchString(args[i]) {
		t.Errorf("%s: %q: cairn %s has no command %q", doc, code, path, args[i])
		return
	}
	flags := ix.commands[path]
	for ; i < len(args); i++ {
		a := args[i]
		if a == "..." || a == "--" {
			continue
		}
		f := flagWord.FindStringSubmatch(a)
		if f == nil {
			continue
		}
		if !flags[f[1]] && !ix.global[f[1]] {
			t.Errorf("%s: %q: cairn %s has no flag --%s", doc, code, path, f[1])
		}
	}
}

// undocumentedOK are flags the help itself explains well enough and that
// no page needs (none yet: add with a reason).
var undocumentedOK = map[string]bool{}

// TestCLIIsDocumented: every command of cairn (its path, such as "serve
// token add") and every flag it takes appears somewhere in README.md or
// docs/*.md, so nothing the help offers is left for the administrator to
// guess. Hidden flags (for tests) are exempt.
func TestCLIIsDocumented(t *testing.T) {
	var all strings.Builder
	for _, doc := range docFiles(t) {
		all.WriteString(doc)
		all.WriteString("\n")
	}
	text := all.String()
	app := newApp()
	var missing []string
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			path := strings.TrimSpace(prefix + " " + c.Name)
			if c.Hidden {
				continue
			}
			if !mentionsCommand(text, path) && !undocumentedOK[path] {
				missing = append(missing, "command "+path)
			}
			for _, f := range c.Flags {
				if hidden, ok := f.(interface{ IsVisible() bool }); ok && !hidden.IsVisible() {
					continue
				}
				n := f.Names()[0]
				if n == "help" {
					continue
				}
				if !flagMentioned(text, f.Names()) && !undocumentedOK[path+" --"+n] {
					missing = append(missing, "cairn "+path+" --"+n)
				}
			}
			walk(path, c.Subcommands)
		}
	}
	walk("", app.Commands)
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("not in README.md or docs/*.md: %s (cairn help shows it)", m)
	}
}

// mentionsCommand: the page text names the command as "cairn PATH" or
// `PATH` (a table cell such as `remote takeover`), or, for a subcommand,
// its last word in a list after its parent ("cairn remote add/init").
func mentionsCommand(text, path string) bool {
	if strings.Contains(text, "cairn "+path) || strings.Contains(text, "`"+path) {
		return true
	}
	words := strings.Fields(path)
	if len(words) < 2 {
		return regexp.MustCompile(`\b` + regexp.QuoteMeta(path) + `\b`).MatchString(text)
	}
	parent, last := strings.Join(words[:len(words)-1], " "), words[len(words)-1]
	return regexp.MustCompile(regexp.QuoteMeta(parent) + ` [a-z/-]*\b` + regexp.QuoteMeta(last) + `\b`).MatchString(text)
}

// flagMentioned: the text shows the flag by one of its names (--name, or
// -x for a one-letter alias).
func flagMentioned(text string, names []string) bool {
	for _, n := range names {
		dash := "--"
		if len(n) == 1 {
			dash = "-"
		}
		if regexp.MustCompile(`(^|[^a-z-])` + dash + regexp.QuoteMeta(n) + `\b`).MatchString(text) {
			return true
		}
	}
	return false
}
