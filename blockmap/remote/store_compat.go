package remote

// What differs between S3 engines and how the store copes (docs/remote.md,
// "Tested object stores").

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// retentionXML is an answer to GET ?retention under any root element name:
// AWS and RGW send <Retention>, versitygw <ObjectLockRetention>, which
// minio-go refuses to decode.
type retentionXML struct {
	Mode            string `xml:"Mode"`
	RetainUntilDate string `xml:"RetainUntilDate"`
}

// retentionRaw reads an object version's retain-until date with a
// presigned GET ?retention decoded here, for stores whose answer minio-go
// cannot decode (getErr). A HEAD of the version would not do: versitygw
// sends the Object Lock headers only for the current version, and the
// versions cairn wrote are no longer current once someone overwrites them.
func (s *store) retentionRaw(ctx context.Context, name, version string, getErr error) (time.Time, error) {
	q := url.Values{"retention": {""}}
	if version != "" {
		q.Set("versionId", version)
	}
	ctx, cancel := s.opContext(ctx, 0)
	defer cancel()
	u, err := s.cl.Presign(ctx, http.MethodGet, s.bucket, name, 5*time.Minute, q)
	if err != nil {
		return time.Time{}, s.s3err("get retention", name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return time.Time{}, fmt.Errorf("get retention %s: %w", name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return time.Time{}, fmt.Errorf("get retention %s: %w", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("get retention %s: HTTP %d after an undecodable answer (%v)", name, resp.StatusCode, getErr)
	}
	var r retentionXML
	if err := xml.Unmarshal(body, &r); err != nil {
		return time.Time{}, fmt.Errorf("get retention %s: %w (%v)", name, err, getErr)
	}
	if r.RetainUntilDate == "" {
		return time.Time{}, nil
	}
	until, err := time.Parse(time.RFC3339Nano, r.RetainUntilDate)
	if err != nil {
		return time.Time{}, fmt.Errorf("get retention %s: retain-until date %q: %w", name, r.RetainUntilDate, err)
	}
	return until, nil
}
