// Package s3test runs a test against every real S3 engine cairn is tested
// with: Ceph RGW (internal/rgwtest) and versitygw (internal/versitytest),
// two independent code bases, so that cairn's client is not fitted to one
// store's quirks.
//
// Vocabulary: an Engine is one running store as a test sees it (its name,
// endpoint, credentials, and how to kill and restart it); Each runs a
// subtest per engine, named by the engine ("rgw", "versitygw"); RGW and
// Versity return one engine, the test binary's shared instance (started
// once, on first use); Main stops every shared instance when the binary's
// tests end. Each test isolates itself with a bucket of its own
// (NewBucketName). A missing engine skips its subtest locally and fails
// it under CI=true.
package s3test
