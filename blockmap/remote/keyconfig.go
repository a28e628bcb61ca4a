package remote

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/zeebo/blake3"
)

// ErrKeyChanged means the secret opened only an older version of
// cairn/config: the remote's key was changed since (Rekey). It comes
// wrapped together with ErrWrongKey.
var ErrKeyChanged = errors.New("the remote's key was changed (cairn remote rekey)")

// loadedConfig is the config whose master key Open unwrapped.
type loadedConfig struct {
	cfg     config
	master  []byte
	cached  bool          // the master key came from Options.KeyCache
	fetched time.Duration // until the first GET of the config answered
}

const configSealContext = "cairn remote config seal v1"

// configSeal is the MAC of a config's fields under a key derived from
// the master key. Only a holder of the master key can make it, so a
// config that carries it was written by cairn (Init or Rekey), not put
// over the remote's config by someone holding only the credentials.
func configSeal(c *config, master []byte) []byte {
	var k [32]byte
	blake3.DeriveKey(configSealContext, master, k[:])
	h, _ := blake3.NewKeyed(k[:])
	var rekeyed int64
	if c.Rekeyed != nil {
		rekeyed = c.Rekeyed.UnixNano()
	}
	js, _ := json.Marshal(struct {
		Format        int
		Created       int64
		KDF           KDF
		Key           []byte
		ImmutableDays int
		Rekeyed       int64
	}{c.Format, c.Created.UnixNano(), c.KDF, c.Key, c.ImmutableDays, rekeyed})
	h.Write(js)
	return h.Sum(nil)
}

// sealedBy reports whether c carries a valid seal of master.
func (c *config) sealedBy(master []byte) bool {
	return len(c.Seal) == 32 && subtle.ConstantTimeCompare(configSeal(c, master), c.Seal) == 1
}

func parseConfig(data []byte) (*config, error) {
	var cfg config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, configName, err)
	}
	if cfg.Format > FormatVersion {
		return nil, fmt.Errorf("%w: %s names format %d, written by a newer cairn (this cairn reads %d): use a cairn at least as new as the one that made the remote", ErrFormat, configName, cfg.Format, FormatVersion)
	}
	if cfg.Format != FormatVersion {
		return nil, fmt.Errorf("%w: format %d (this cairn reads %d)", ErrFormat, cfg.Format, FormatVersion)
	}
	return &cfg, nil
}

// useConfig parses one version of the config and unwraps its master key
// with the secret (or takes it from the key cache).
func (r *Remote) useConfig(data []byte) (*loadedConfig, error) {
	cfg, err := parseConfig(data)
	if err != nil {
		return nil, err
	}
	if m, ok := readKeyCache(r.opts.KeyCache, r.opts.Secret, cfg.Key); ok {
		return &loadedConfig{cfg: *cfg, master: m, cached: true}, nil
	}
	m, err := unwrapMaster(cfg.KDF, r.opts.Secret, cfg.Key)
	if err != nil {
		return nil, err
	}
	return &loadedConfig{cfg: *cfg, master: m}, nil
}

// loadConfig reads cairn/config and unwraps the master key: the latest
// version (one GET) or, when that does not open with the secret (replaced
// or damaged behind cairn's back), the newest older version that does.
// An older version that opens while a newer one carries the seal of the
// same master key means the key was changed (Rekey) and the secret is an
// old one: that is ErrWrongKey (and ErrKeyChanged), not a fallback.
func (r *Remote) loadConfig(ctx context.Context) (*loadedConfig, error) {
	start := time.Now()
	latest, err := r.st.get(ctx, configName, "", 0, 0)
	fetched := time.Since(start)
	var firstErr error
	if err == nil {
		lc, uerr := r.useConfig(latest)
		if uerr == nil {
			lc.fetched = fetched
			r.keepKey(lc)
			return lc, nil
		}
		firstErr = uerr
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	vs, lerr := r.st.versions(ctx, configName)
	if lerr != nil || len(vs) == 0 {
		if firstErr != nil {
			return nil, firstErr
		}
		return nil, err
	}
	var newer [][]byte // versions newer than the one tried, that did not open
	for _, v := range vs {
		data, gerr := r.st.get(ctx, configName, v, 0, 0)
		if gerr != nil {
			continue
		}
		if latest != nil && bytes.Equal(data, latest) {
			newer = append(newer, data) // tried above
			continue
		}
		lc, uerr := r.useConfig(data)
		if uerr != nil {
			if firstErr == nil {
				firstErr = uerr
			}
			newer = append(newer, data)
			continue
		}
		if when, ok := rekeyedSince(newer, lc.master); ok {
			return nil, fmt.Errorf("%w: %w on %s; this key file or passphrase is an old one", ErrWrongKey, ErrKeyChanged, when.UTC().Format(time.RFC3339))
		}
		r.log.Warn("remote object replaced or deleted behind cairn's back; using an older version", "object", configName, "version", v)
		lc.fetched = fetched
		r.keepKey(lc)
		return lc, nil
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, err
}

// keepKey writes the key cache when the master key was derived.
func (r *Remote) keepKey(lc *loadedConfig) {
	if lc.cached {
		return
	}
	if err := writeKeyCache(r.opts.KeyCache, r.opts.Secret, lc.cfg.Key, lc.master); err != nil {
		r.log.Warn("cannot keep the remote's key for the next run; every run derives it again", "err", err)
	}
}

// rekeyedSince reports whether one of the newer config versions carries
// the seal of master (a rekey by a holder of the master key), and when.
func rekeyedSince(newer [][]byte, master []byte) (time.Time, bool) {
	for _, data := range newer {
		cfg, err := parseConfig(data)
		if err != nil || !cfg.sealedBy(master) {
			continue
		}
		if cfg.Rekeyed != nil {
			return *cfg.Rekeyed, true
		}
		return cfg.Created, true
	}
	return time.Time{}, false
}

// RetainedVersion is an object version the store keeps under Object Lock
// retention until Until (zero: a legal hold or another lock the store
// gave as its reason to refuse the deletion).
type RetainedVersion struct {
	Object  string    `json:"object"`
	Version string    `json:"version"`
	Until   time.Time `json:"until"`
}

// RekeyReport says what Rekey did.
type RekeyReport struct {
	// Versioned: the bucket keeps versions, so the new config was written
	// as a new version of cairn/config (else first under a temporary name).
	Versioned bool `json:"versioned"`
	// Version is the new config's version id ("" unversioned).
	Version string `json:"version,omitempty"`
	// OldDeleted counts earlier versions of the config that were deleted.
	OldDeleted int `json:"old_versions_deleted"`
	// OldRetained are earlier versions of the config that Object Lock
	// keeps until their date: the old key still unwraps the master key
	// from them until then (prune --remote deletes them after).
	OldRetained []RetainedVersion `json:"old_versions_retained,omitempty"`
}

// rekeyTemp is where Rekey writes the new config first on a bucket
// without versioning, so that cairn/config is replaced only by a config
// that was read back and authenticated.
const rekeyTemp = prefix + "config.next"

// Rekey wraps the remote's master key anew with a key derived from
// newSecret (a fresh argon2id salt) and replaces cairn/config, so that the
// secret the remote was opened with no longer opens its config. The data
// is not re-encrypted: the master key stays the same, so whoever holds
// the old secret and a copy of the old config can still read it.
//
// The bucket is never left without a config that opens: on a versioned
// bucket the new config is a new version of cairn/config, read back and
// authenticated (the older version stays readable until then, and Open
// falls back to it while the newest does not open); on an unversioned
// bucket it is written under a temporary name first, read back and
// authenticated, then put over cairn/config and compared. Earlier
// versions of the config are deleted when the store allows it; those
// under Object Lock retention stay until their date (OldRetained) and
// prune deletes them after.
func (r *Remote) Rekey(ctx context.Context, newSecret []byte) (*RekeyReport, error) {
	if len(newSecret) == 0 {
		return nil, errors.New("rekey: no new key: give a key file or a passphrase")
	}
	if r.conf == nil {
		return nil, errors.New("rekey: the remote was not opened with its config")
	}
	now := time.Now().UTC()
	cfg := r.conf.cfg
	cfg.KDF = defaultKDF()
	cfg.Rekeyed = &now
	wrapped, err := wrapMaster(cfg.KDF, newSecret, r.conf.master)
	if err != nil {
		return nil, err
	}
	cfg.Key = wrapped
	cfg.Seal = configSeal(&cfg, r.conf.master)
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	versioned, err := r.st.versioned(ctx)
	if err != nil {
		return nil, err
	}
	rep := &RekeyReport{Versioned: versioned}
	check := func(version string) error {
		got, err := r.st.get(ctx, configName, version, 0, 0)
		if err != nil {
			return fmt.Errorf("rekey: read back the new config: %w", err)
		}
		return r.checkNewConfig(got, newSecret)
	}
	if versioned {
		v, err := r.st.put(ctx, configName, data, putOptions{retainUntil: retainUntil(r.opts.ImmutableDays)})
		if err != nil {
			return nil, fmt.Errorf("rekey: %w", err)
		}
		rep.Version = v
		if err := check(v); err != nil {
			// The older version still opens with the old secret.
			if rerr := r.st.remove(ctx, configName, v); rerr != nil {
				r.log.Warn("cannot delete the new config version that failed its check", "version", v, "err", rerr)
			}
			return nil, err
		}
		lockOn, err := r.st.objectLock(ctx)
		if err != nil {
			return rep, err
		}
		r.lockOn = lockOn
		r.conf.cfg = cfg
		rep.OldDeleted, rep.OldRetained, err = r.dropOldConfigs(ctx)
		return rep, err
	}
	if _, err := r.st.put(ctx, rekeyTemp, data, putOptions{}); err != nil {
		return nil, fmt.Errorf("rekey: %w", err)
	}
	got, err := r.st.get(ctx, rekeyTemp, "", 0, 0)
	if err != nil {
		return nil, fmt.Errorf("rekey: read back the new config: %w", err)
	}
	if err := r.checkNewConfig(got, newSecret); err != nil {
		return nil, err
	}
	if _, err := r.st.put(ctx, configName, data, putOptions{}); err != nil {
		return nil, fmt.Errorf("rekey: %w", err)
	}
	if got, err = r.st.get(ctx, configName, "", 0, 0); err != nil {
		return nil, fmt.Errorf("rekey: read back the new config: %w", err)
	}
	if !bytes.Equal(got, data) {
		return nil, fmt.Errorf("rekey: %w: %s reads back other bytes than were written (the authenticated copy is %s)", ErrCorrupt, configName, rekeyTemp)
	}
	r.conf.cfg = cfg
	if err := r.st.remove(ctx, rekeyTemp, ""); err != nil {
		r.log.Warn("cannot delete the temporary copy of the new config", "object", rekeyTemp, "err", err)
	}
	return rep, nil
}

// checkNewConfig authenticates a config read back after Rekey: it must
// unwrap this remote's master key with newSecret and carry its seal.
func (r *Remote) checkNewConfig(data, newSecret []byte) error {
	cfg, err := parseConfig(data)
	if err != nil {
		return fmt.Errorf("rekey: the new config read back: %w", err)
	}
	m, err := unwrapMaster(cfg.KDF, newSecret, cfg.Key)
	if err != nil || !bytes.Equal(m, r.conf.master) || !cfg.sealedBy(r.conf.master) {
		return fmt.Errorf("rekey: %w: the new config read back does not open with the new key", ErrCorrupt)
	}
	return nil
}

// currentConfig finds the version of cairn/config that cairn wrote last:
// the newest version that carries the seal of this remote's master key.
// A config written before seals existed has none: then the oldest
// version is cairn's (as Init wrote it) and sealed is false. older are
// the data versions older than the current one (only when sealed).
func (r *Remote) currentConfig(ctx context.Context) (current string, sealed bool, older []objectVersion, err error) {
	vs, err := r.st.allVersions(ctx, configName)
	if err != nil {
		return "", false, nil, err
	}
	var data []objectVersion
	for _, v := range vs {
		if !v.marker {
			data = append(data, v)
		}
	}
	if len(data) == 0 {
		return "", false, nil, fmt.Errorf("%s: %w", configName, ErrNotFound)
	}
	if len(data) == 1 {
		return data[0].id, false, nil, nil
	}
	for i, v := range data {
		got, err := r.st.get(ctx, configName, v.id, 0, 0)
		if err != nil {
			continue
		}
		if cfg, err := parseConfig(got); err == nil && cfg.sealedBy(r.conf.master) {
			return v.id, true, data[i+1:], nil
		}
	}
	return data[len(data)-1].id, false, nil, nil
}

// dropOldConfigs deletes the versions of cairn/config older than the one
// cairn wrote last (a rekey's old wrapped keys), except those under
// retention, which it returns. r.lockOn must say whether the bucket has
// Object Lock.
func (r *Remote) dropOldConfigs(ctx context.Context) (int, []RetainedVersion, error) {
	if r.conf == nil {
		return 0, nil, nil
	}
	_, sealed, older, err := r.currentConfig(ctx)
	if err != nil || !sealed {
		return 0, nil, err
	}
	now := time.Now()
	deleted := 0
	var kept []RetainedVersion
	for _, v := range older {
		until, err := r.retention(ctx, configName, v.id)
		if err != nil {
			return deleted, kept, err
		}
		if until.After(now) {
			kept = append(kept, RetainedVersion{Object: configName, Version: v.id, Until: until})
			continue
		}
		if err := r.st.remove(ctx, configName, v.id); errors.Is(err, ErrLocked) {
			// A legal hold or a governance retention: the store keeps it.
			kept = append(kept, RetainedVersion{Object: configName, Version: v.id})
			continue
		} else if err != nil {
			return deleted, kept, fmt.Errorf("delete an old version of the config: %w", err)
		}
		deleted++
	}
	return deleted, kept, nil
}

// versioned reports whether the bucket keeps object versions (versioning
// enabled, as Object Lock implies).
func (s *store) versioned(ctx context.Context) (bool, error) {
	vc, err := s.cl.GetBucketVersioning(ctx, s.bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchBucket" {
			return false, s.s3err("get bucket versioning", s.bucket, err)
		}
		// A store that does not answer versioning: Object Lock implies it.
		return s.objectLock(ctx)
	}
	return vc.Enabled(), nil
}
