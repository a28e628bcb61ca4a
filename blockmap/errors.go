package blockmap

import "fmt"

// RepoMissingError says that there is no repository at Dir: none was
// given (Dir is empty), the directory does not exist, or it holds no
// cairn.json. It matches ErrNotRepository; the CLI adds how to make one.
type RepoMissingError struct {
	Dir    string
	Exists bool // the directory exists but has no cairn.json
	// Inside is the repository that holds Dir in one of its directories
	// (--repo REPO/images), or "".
	Inside string
	File   bool // Dir is a file, not a directory
}

func (e *RepoMissingError) Error() string {
	switch {
	case e.Dir == "":
		return fmt.Sprintf("no repository given: %v", ErrNotRepository)
	case !e.Exists:
		return fmt.Sprintf("repository %s does not exist: %v", e.Dir, ErrNotRepository)
	case e.File:
		return fmt.Sprintf("%s is a file: %v (a repository is a directory)", e.Dir, ErrNotRepository)
	}
	return fmt.Sprintf("%s: %v: cairn.json is missing", e.Dir, ErrNotRepository)
}

func (e *RepoMissingError) Unwrap() error { return ErrNotRepository }

// PointNotFoundError says that VM has no recovery point Ref, or no
// recovery points at all (Ref empty). It matches ErrNotFound; the CLI adds
// where to find the points there are.
type PointNotFoundError struct {
	VM, Ref string
}

func (e *PointNotFoundError) Error() string {
	if e.Ref == "" {
		return fmt.Sprintf("VM %q: %v: the repository has no recovery points for it", e.VM, ErrNotFound)
	}
	return fmt.Sprintf("VM %q has no recovery point %q: %v", e.VM, e.Ref, ErrNotFound)
}

func (e *PointNotFoundError) Unwrap() error { return ErrNotFound }
