package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/blockmap/remote"
	"github.com/cairnbackup/cairn/internal/ratelimit"
)

// limitRateFlag caps one run's bandwidth to a remote (docs/remote.md,
// "Bandwidth").
var limitRateFlag = &cli.StringFlag{Name: "limit-rate", Usage: "cap this run's bandwidth to the remote (uploads and downloads together) at `RATE` " +
	"bytes per second: 50M, 800k, 1.5G (1024-based, like curl) or 100Mbit (bits); unlimited lifts the remote's default (cairn remote add --limit-rate)",
	Action: checkLimitRateFlag}

// checkLimitRateFlag refuses a bad --limit-rate, and one given without
// --remote, before the command does anything.
func checkLimitRateFlag(c *cli.Context, v string) error {
	if _, err := parseLimitRate("--limit-rate", v); err != nil {
		return err
	}
	if c.String("remote") == "" {
		return errors.New("--limit-rate caps transfers to and from a remote: give --remote NAME too (reads of the local repository are not limited)")
	}
	return nil
}

// parseLimitRate reads a --limit-rate value; the error names the flag and
// an example.
func parseLimitRate(flag, s string) (ratelimit.Rate, error) {
	r, err := ratelimit.ParseRate(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", flag, err)
	}
	return r, nil
}

// limiter is the remote's default limiter (nil: unlimited).
func (rc *remoteConfig) limiter() *ratelimit.Limiter {
	if rc.LimitRate <= 0 {
		return nil
	}
	return ratelimit.New(ratelimit.Schedule{Rate: ratelimit.Rate(rc.LimitRate)})
}

// limitString is the remote's default limit as remote list shows it.
func (rc *remoteConfig) limitString() string {
	if rc.LimitRate <= 0 {
		return "-"
	}
	return ratelimit.Rate(rc.LimitRate).String()
}

// logLimit says what limit a run of remote name uses and why.
func logLimit(name string, l *ratelimit.Limiter, source string) {
	if l == nil {
		slog.Info("no bandwidth limit", "remote", name, "set_by", source)
		return
	}
	slog.Info("bandwidth limit", "remote", name, "limit", l.Schedule().String(), "set_by", source)
}

// optionsFor is optionsIn with the command's --limit-rate applied; it
// logs the limit the run uses.
func (rc *remoteConfig) optionsFor(c *cli.Context, repoDir string) (remote.Options, error) {
	o, err := rc.optionsIn(repoDir)
	if err != nil {
		return o, err
	}
	if c.IsSet("limit-rate") {
		err = applyLimitFlag(c, rc, &o)
	} else if o.Store.Limiter != nil {
		logLimit(rc.Name, o.Store.Limiter, "the remote's default (cairn remote list)")
	}
	return o, err
}

// applyLimitFlag lets the command's --limit-rate, when given, replace the
// remote's default limit for this run.
func applyLimitFlag(c *cli.Context, rc *remoteConfig, o *remote.Options) error {
	if !c.IsSet("limit-rate") {
		return nil
	}
	r, err := parseLimitRate("--limit-rate", c.String("limit-rate"))
	if err != nil {
		return err
	}
	o.Store.Limiter = nil
	if r != ratelimit.Unlimited {
		o.Store.Limiter = ratelimit.New(ratelimit.Schedule{Rate: r})
	}
	logLimit(rc.Name, o.Store.Limiter, "--limit-rate")
	return nil
}

// remoteLimitCommand is `cairn remote limit NAME RATE`: it sets (or with
// unlimited lifts) the remote's default limit.
func remoteLimitCommand() *cli.Command {
	return &cli.Command{
		Name:      "limit",
		Usage:     "set the remote's default bandwidth limit (RATE bytes per second: 50M, 800k, 1.5G or 100Mbit), or lift it with unlimited",
		ArgsUsage: "NAME RATE",
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return fmt.Errorf("remote limit: give the remote's NAME and a RATE, e.g. cairn remote limit offsite 50M (or unlimited)")
			}
			r, err := parseLimitRate("remote limit", c.Args().Get(1))
			if err != nil {
				return err
			}
			repo, err := openRepo(c)
			if err != nil {
				return err
			}
			defer repo.Close()
			rc, err := loadRemoteConfig(repo.Dir(), c.Args().First())
			if err != nil {
				return err
			}
			rc.LimitRate = int64(r)
			if err := writeRemoteConfig(repo.Dir(), rc); err != nil {
				return err
			}
			fmt.Printf("remote %s: default bandwidth limit %s\n", rc.Name, r)
			return nil
		},
	}
}
