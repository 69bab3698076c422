"""The buckets' CORS rules for browser pages (the playground), shared by the stack and local mode.

A page on another origin POSTs uploads to the uploads bucket with the API's presigned forms, and
reads the live preview (hls.js fetches the playlist and segments) and the mp4 from the outputs
bucket with presigned GETs. S3 answers such a request with `Access-Control-Allow-Origin` only
when a rule of the bucket matches the request's origin and method (and, for a preflight, its
headers); without one the browser withholds the answer, so the page cannot tell the upload
worked. Only the stage's exact origins are allowed, and only these methods: the presigned
signature stays the authorization. No other bucket gets a rule.
"""

from __future__ import annotations

from typing import Any

from runtime.common.names import BucketRole

MAX_AGE_SECONDS = 3000
# What a presigned POST or PUT may carry as request headers (a form POST needs none of them).
UPLOAD_HEADERS = ("content-type", "content-md5", "content-length", "x-amz-*")


def bucket_cors_rules(role: BucketRole, origins: tuple[str, ...]) -> list[dict[str, Any]]:
    """The bucket's CORS rules in the S3 API's shape (`CORSRules`); none without origins."""
    if not origins:
        return []
    if role is BucketRole.UPLOADS:
        return [
            {
                "AllowedMethods": ["POST", "PUT"],
                "AllowedOrigins": list(origins),
                "AllowedHeaders": list(UPLOAD_HEADERS),
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": MAX_AGE_SECONDS,
            }
        ]
    if role is BucketRole.OUTPUTS:
        return [
            {
                "AllowedMethods": ["GET", "HEAD"],
                "AllowedOrigins": list(origins),
                "AllowedHeaders": ["range"],
                "MaxAgeSeconds": MAX_AGE_SECONDS,
            }
        ]
    return []
