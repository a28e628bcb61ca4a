package remote

import "testing"

// TestCheckStore: endpoints without a scheme or with a path and bucket
// names S3 refuses are caught when a remote is registered.
func TestCheckStore(t *testing.T) {
	for _, tc := range []struct {
		endpoint, bucket string
		ok               bool
	}{
		{"https://s3.example.net", "cairn-offsite", true},
		{"http://127.0.0.1:9000/", "cairn.offsite.2", true},
		{"127.0.0.1:9000", "cairn-offsite", false},
		{"s3.example.net", "cairn-offsite", false},
		{"ftp://s3.example.net", "cairn-offsite", false},
		{"https://s3.example.net/cairn-offsite", "cairn-offsite", false},
		{"https://s3.example.net", "Cairn_Offsite", false},
		{"https://s3.example.net", "ab", false},
		{"https://s3.example.net", "", false},
	} {
		if err := CheckStore(tc.endpoint, tc.bucket); (err == nil) != tc.ok {
			t.Errorf("%s %s: %v, want ok %v", tc.endpoint, tc.bucket, err, tc.ok)
		}
	}
}
