// Package deps pins the modules that the design card fixes while the
// packages that use them are being written. It is removed once each is
// imported by real code.
package deps

import (
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/diskfs/go-diskfs"
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/urfave/cli/v2"
	_ "github.com/vmware/govmomi"
	_ "github.com/vmware/govmomi/simulator"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/term"
	_ "www.velocidex.com/golang/go-ntfs/parser"
)
