// Package versitytest starts a real versitygw (the Versity S3 Gateway,
// github.com/versity/versitygw) for tests: one process on 127.0.0.1 that
// serves S3 from a plain directory (its posix backend), with bucket
// versioning and Object Lock. It is cairn's second S3 engine beside Ceph
// RGW (internal/rgwtest): a different code base, so the remote tests
// catch what cairn's client assumes about one store only.
//
// Vocabulary (the same as rgwtest's): a Gateway is one running instance,
// its data in Dir/data (a bucket is a directory, an object a file with
// its metadata in extended attributes), older object versions in
// Dir/versions, its output in Dir/log; Shared gives every test of a test
// binary the same Gateway (started once, on first use); Main stops it
// when the binary's tests end (without a TestMain the process still dies
// with the test binary and its directory is removed after it). Tests
// isolate themselves with a bucket of their own (NewBucketName). The
// gateway runs in single-account mode: the root access key and secret
// are the only credentials.
//
// scripts/install-deps.sh installs the binary (go install, pinned
// Version). Locally a missing versitygw skips the test; under CI=true it
// fails.
package versitytest
