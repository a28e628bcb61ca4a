package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cairnbackup/cairn/backupd/serve"
	"github.com/cairnbackup/cairn/blockmap/remote"
)

// openServeRemote is cairn serve's serve.RemoteOpener: it opens a remote
// registered with cairn remote add (exclusive: with this machine's lock of
// it), and
// renews Object Lock retentions after a replication when due (as cairn
// replicate does).
func openServeRemote(ctx context.Context, repoDir, name string, exclusive bool) (*serve.OpenedRemote, error) {
	if _, err := os.Stat(remoteConfigPath(repoDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remote %q: %w: add it with cairn remote add %s --endpoint URL --bucket B ... and cairn remote init %s", name, serve.ErrUnknownRemote, name, name)
	}
	rc, err := loadRemoteConfig(repoDir, name)
	if err != nil {
		return nil, err
	}
	o, err := rc.optionsIn(repoDir)
	if err != nil {
		return nil, err
	}
	unlock := func() {}
	if exclusive {
		if unlock, err = waitRemoteLock(ctx, repoDir, name); err != nil {
			return nil, err
		}
	}
	rem, err := remote.Open(ctx, o)
	if err != nil {
		unlock()
		return nil, remoteAdvice(rc, err)
	}
	return &serve.OpenedRemote{
		Remote:   rem,
		CacheDir: remoteCacheDir(repoDir, name),
		AfterReplicate: func(ctx context.Context) error {
			if rem.ImmutableDays() <= 0 || !extendDue(repoDir, name, rem.ImmutableDays()) {
				return nil
			}
			if _, err := rem.Extend(ctx); err != nil {
				return fmt.Errorf("extending retentions failed: %w (run cairn remote extend %s)", err, name)
			}
			return writeExtendStamp(repoDir, name)
		},
		Release: func() { rem.Close(); unlock() },
	}, nil
}

// waitRemoteLock takes this machine's lock of a remote, waiting (up to
// 30 minutes) while a cairn replicate or prune holds it.
func waitRemoteLock(ctx context.Context, repoDir, name string) (func(), error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	for {
		unlock, err := lockRemote(repoDir, name)
		if err == nil {
			return unlock, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
		case <-time.After(2 * time.Second):
		}
	}
}
