#!/bin/sh
# docker-compose.yml's one-shot `s3-init` service: creates the service's bucket through `weed shell` (the master and
# filer over the compose network), since neither S3 identity of docker/s3.json may create buckets. Succeeds when the
# bucket exists already, so that every `docker compose up` can run it.
#   S3_BUCKET         the bucket (PERSGUARD_S3_BUCKET of the api and the workers)
#   SEAWEEDFS_MASTER  the master, host:port (default s3:9333)
#   WEED              the weed binary (default weed, on the image's PATH)
set -eu

: "${S3_BUCKET:?set S3_BUCKET}"
output=$(echo "s3.bucket.create -name $S3_BUCKET" | "${WEED:-weed}" shell -master="${SEAWEEDFS_MASTER:-s3:9333}" 2>&1) || true
echo "$output"
case "$output" in
    *"created bucket $S3_BUCKET"* | *"bucket $S3_BUCKET already exists"*) exit 0 ;;
esac
echo "seaweedfs-create-bucket: could not create bucket $S3_BUCKET" >&2
exit 1
