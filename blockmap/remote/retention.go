package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/minio/minio-go/v7"
)

// Retention is what Object Lock retention the objects cairn writes to a
// bucket get: their own (the remote's immutable days), or else the
// bucket's default retention, which the store applies to every object
// written without one.
type Retention struct {
	// ObjectLock tells that the bucket has Object Lock enabled.
	ObjectLock bool `json:"object_lock"`
	// BucketMode and BucketDays are the bucket's default retention
	// (GOVERNANCE or COMPLIANCE; a default given in years counts 365 days
	// a year); zero when it has none.
	BucketMode string `json:"bucket_mode,omitempty"`
	BucketDays int    `json:"bucket_days,omitempty"`
	// ConfigDays is the retention the remote was initialized with (its
	// cairn/config); 0 when none, or when the bucket holds no remote yet.
	ConfigDays int `json:"config_days,omitempty"`
}

// Retention sources of Retention.Days.
const (
	RetentionNone       = ""               // no retention applies
	RetentionRemote     = "remote"         // cairn's own: registered or the remote's config
	RetentionBucketDflt = "bucket default" // the bucket's default retention
)

// Days is the retention, in days, new objects get when this machine
// registered the remote with registered immutable days, and where it
// comes from: cairn's own (the larger of registered and the remote's
// config; cairn renews it) or, without one, the bucket's default (the
// store applies it once, at each write; cairn does not renew it).
func (r Retention) Days(registered int) (int, string) {
	if d := max(registered, r.ConfigDays); d > 0 {
		return d, RetentionRemote
	}
	if r.BucketDays > 0 {
		return r.BucketDays, RetentionBucketDflt
	}
	return 0, RetentionNone
}

// CheckRetention asks a bucket what retention the objects cairn writes
// get, without the remote's key: two requests (the bucket's Object Lock
// configuration and the remote's plaintext cairn/config, whose
// immutable days are not authenticated here: Open checks its seal).
func CheckRetention(ctx context.Context, o StoreOptions) (Retention, error) {
	st, err := newStore(o)
	if err != nil {
		return Retention{}, err
	}
	r, err := st.bucketRetention(ctx)
	if err != nil {
		return r, err
	}
	data, err := st.get(ctx, configName, "", 0, 0)
	if errors.Is(err, ErrNotFound) {
		return r, nil // not initialized yet
	}
	if err != nil {
		return r, err
	}
	var cfg config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return r, fmt.Errorf("%w: %s: %v", ErrFormat, configName, err)
	}
	r.ConfigDays = cfg.ImmutableDays
	return r, nil
}

// bucketRetention reads the bucket's Object Lock configuration (one
// request); ConfigDays stays 0.
func (s *store) bucketRetention(ctx context.Context) (Retention, error) {
	enabled, mode, validity, unit, err := s.cl.GetObjectLockConfig(ctx, s.bucket)
	if err != nil {
		resp := minio.ToErrorResponse(err)
		if resp.Code == "ObjectLockConfigurationNotFoundError" || resp.StatusCode == 404 && resp.Code != "NoSuchBucket" {
			return Retention{}, nil
		}
		return Retention{}, s.s3err("get object lock configuration", s.bucket, err)
	}
	r := Retention{ObjectLock: enabled == "Enabled"}
	if mode != nil && validity != nil && unit != nil && *validity > 0 {
		r.BucketMode = mode.String()
		r.BucketDays = int(*validity)
		if *unit == minio.Years {
			r.BucketDays *= 365
		}
	}
	return r, nil
}

// BucketRetention asks the bucket for its Object Lock configuration (one
// request) and returns it with the remote's config's retention.
func (r *Remote) BucketRetention(ctx context.Context) (Retention, error) {
	ret, err := r.st.bucketRetention(ctx)
	if r.conf != nil {
		ret.ConfigDays = r.conf.cfg.ImmutableDays
	}
	return ret, err
}
