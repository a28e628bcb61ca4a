package remote

import (
	"fmt"
	"net/url"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// CheckStore checks an endpoint and a bucket name before they are
// registered (cairn remote add), so that a mistake fails there and not
// at the first replication or, worse, at a disaster recovery. The
// endpoint is http:// or https:// with a host; the bucket name follows
// the S3 rules (3-63 lowercase letters, digits, dots and hyphens).
func CheckStore(endpoint, bucket string) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("endpoint %q: want http://HOST[:PORT] or https://HOST[:PORT]", endpoint)
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Errorf("endpoint %q: want no path (the bucket is named on its own)", endpoint)
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return fmt.Errorf("bucket %q: not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens): %v", bucket, err)
	}
	return nil
}
