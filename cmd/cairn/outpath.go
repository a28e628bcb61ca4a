package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// realPath is path made absolute with its symlinks resolved; a path that
// does not exist yet resolves through its nearest existing parent.
func realPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	rest := ""
	for p := abs; ; p = filepath.Dir(p) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest), nil
		}
		if p == filepath.Dir(p) {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}

// refuseInsideRepo refuses an output path (a file cairn writes, or a
// mount point) that lies in the repository: writing there would destroy
// the repository's own files (cairn.json, the index, delta images).
func refuseInsideRepo(repoDir, out, what string) error {
	if repoDir == "" || out == "" {
		return nil
	}
	repo, err := realPath(repoDir)
	if err != nil {
		return nil
	}
	o, err := realPath(out)
	if err != nil {
		return nil
	}
	if o == repo || strings.HasPrefix(o, repo+string(filepath.Separator)) {
		return fmt.Errorf("%s %s is inside the repository %s: cairn never writes into its repository; choose a path outside it", what, out, repoDir)
	}
	return nil
}

// refuseStdoutInsideRepo refuses a standard output redirected to a file
// in the repository (`cairn export - > REPO/cairn.json`).
func refuseStdoutInsideRepo(repoDir string) error {
	fi, err := os.Stdout.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	target, err := os.Readlink("/proc/self/fd/1")
	if err != nil || !filepath.IsAbs(target) {
		return nil
	}
	return refuseInsideRepo(repoDir, target, "standard output")
}
