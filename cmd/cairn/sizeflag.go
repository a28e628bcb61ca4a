package main

import (
	"fmt"

	"github.com/cairnbackup/cairn/blockmap"
	"github.com/cairnbackup/cairn/internal/bytesize"
)

// Every size flag (--block-size, --cache-size, --larger, --pack-size)
// reads its value with parseSizeFlag: bytes with an optional 1024-based
// suffix (64k, 256KiB, 2G), the syntax --limit-rate takes for a rate.

// parseSizeFlag reads the size given to command's --flag and checks it
// against [min, max] (max 0: no upper bound); the error, a usage error
// (exit 2), names the command, the flag, the value and the allowed range.
func parseSizeFlag(command, flag, s string, min, max int64) (int64, error) {
	n, err := bytesize.Parse(s)
	if err != nil {
		return 0, &usageError{Command: command, Problem: fmt.Sprintf("--%s: %v", flag, err)}
	}
	if n < min || (max > 0 && n > max) {
		return 0, &usageError{Command: command, Problem: fmt.Sprintf("--%s %s: %s", flag, s, sizeRange(min, max))}
	}
	return n, nil
}

// sizeRange says which sizes a flag takes.
func sizeRange(min, max int64) string {
	if max > 0 {
		return fmt.Sprintf("want a size from %s to %s (%d..%d bytes)", bytesize.Short(min), bytesize.Short(max), min, max)
	}
	return fmt.Sprintf("want a size of at least %s (%d bytes), e.g. %s", bytesize.Short(min), min, bytesize.Example)
}

// parseBlockSize reads init's --block-size: a power of two from
// blockmap.MinBlockSize to blockmap.MaxBlockSize, with size suffixes.
func parseBlockSize(s string) (int, error) {
	n, err := parseSizeFlag("init", "block-size", s, 0, 0)
	if err != nil {
		return 0, err
	}
	if n < blockmap.MinBlockSize || n > blockmap.MaxBlockSize || n&(n-1) != 0 {
		return 0, &usageError{Command: "init", Problem: fmt.Sprintf("--block-size %s (%d bytes): want a power of two from %s to %s (%d..%d bytes): 64k, 128k, 256k, 512k or 1M",
			s, n, bytesize.Short(blockmap.MinBlockSize), bytesize.Short(blockmap.MaxBlockSize), blockmap.MinBlockSize, blockmap.MaxBlockSize)}
	}
	return int(n), nil
}
