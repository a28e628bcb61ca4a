package remote

import "github.com/minio/minio-go/v7"

func makeBucketOptions(region string, lock bool) minio.MakeBucketOptions {
	return minio.MakeBucketOptions{Region: region, ObjectLocking: lock}
}
