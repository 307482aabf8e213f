"""An object store on an S3 bucket (AWS or any S3-compatible server such as SeaweedFS)."""

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from factory.errors import BadInput, ObjectNotFound, StoreError, StoreTimedOut, StoreUnavailable
from storage.local import validate_key
from storage.objectstore import ObjectInfo

_CREDENTIAL_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
# HEAD responses carry no body, so a missing bucket or key shows up only as "404".
_MISSING_KEY_CODES = {"NoSuchKey", "404"}
# 409 ConditionalRequestConflict: another conditional write to the key is in flight.
_NOT_WRITTEN_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}
_SERVER_DOWN_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "500", "502", "503"}


class S3Store:
    """Objects under s3://bucket/prefix/.

    The endpoint, profile, region and credentials follow the usual AWS settings
    (AWS_ENDPOINT_URL[_S3], AWS_PROFILE, AWS_REGION, the credentials chain) unless
    given here. Retries are botocore's "standard" mode; max_attempts counts the first try
    and defaults to AWS_MAX_ATTEMPTS, else 3. A server that accepts connections but never
    answers fails a call with StoreTimedOut after at most max_attempts x (connect_timeout +
    read_timeout) seconds, plus botocore's short back-off.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        client: Any = None,
        max_attempts: int | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._client = client or _make_client(
            endpoint_url, profile, region, max_attempts, connect_timeout, read_timeout
        )

    @property
    def url(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    @property
    def endpoint_url(self) -> str:
        return self._client.meta.endpoint_url

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._full_key(key)}"

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        full_key = self._full_key(key)
        with self._errors("write", full_key):
            self._client.put_object(
                Bucket=self._bucket, Key=full_key, Body=data, ContentType=content_type
            )

    def put_if_absent(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> bool:
        # A retried attempt whose first try landed also reads as "not written": callers
        # that need to know compare the stored bytes with theirs.
        full_key = self._full_key(key)
        with self._errors("write", full_key):
            try:
                self._client.put_object(
                    Bucket=self._bucket,
                    Key=full_key,
                    Body=data,
                    ContentType=content_type,
                    IfNoneMatch="*",
                )
            except ClientError as err:
                if _error_code(err) in _NOT_WRITTEN_CODES:
                    return False
                raise
        return True

    def get(self, key: str) -> bytes:
        full_key = self._full_key(key)
        with self._errors("read", full_key):
            return self._get_object(key, full_key)["Body"].read()

    def sha256(self, key: str) -> str:
        full_key = self._full_key(key)
        digest = hashlib.sha256()
        with self._errors("read", full_key):
            for chunk in self._get_object(key, full_key)["Body"].iter_chunks(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    def _get_object(self, key: str, full_key: str) -> dict:
        try:
            return self._client.get_object(Bucket=self._bucket, Key=full_key)
        except ClientError as err:
            if _error_code(err) in _MISSING_KEY_CODES:
                raise ObjectNotFound(f"{self.uri(key)} does not exist.") from None
            raise

    def head(self, key: str) -> ObjectInfo | None:
        full_key = self._full_key(key)
        with self._errors("read", full_key):
            try:
                response = self._client.head_object(Bucket=self._bucket, Key=full_key)
            except ClientError as err:
                if _error_code(err) in _MISSING_KEY_CODES:
                    return None
                raise
        return ObjectInfo(key=key, size=response["ContentLength"])

    def list(self, prefix: str = "") -> Iterator[str]:
        full_prefix = f"{self._prefix}/{prefix}" if self._prefix else prefix
        strip = len(self._prefix) + 1 if self._prefix else 0
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors("list", full_prefix):
            keys = [
                item["Key"][strip:]
                for page in paginator.paginate(Bucket=self._bucket, Prefix=full_prefix)
                for item in page.get("Contents", [])
            ]
        # SeaweedFS lists in directory-tree order ("a/b" before "a-c"), not S3's
        # byte order, so the order the interface promises is made here.
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        full_key = self._full_key(key)
        with self._errors("delete", full_key):
            self._client.delete_object(Bucket=self._bucket, Key=full_key)

    def check_writable(self) -> None:
        with self._errors("reach", ""):
            self._client.head_bucket(Bucket=self._bucket)

    def _full_key(self, key: str) -> str:
        validate_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    @contextmanager
    def _errors(self, action: str, full_key: str) -> Iterator[None]:
        """Translate botocore failures into errors that say what to do."""
        where = f"s3://{self._bucket}/{full_key}"
        try:
            yield
        except (ReadTimeoutError, ConnectTimeoutError) as err:
            raise StoreTimedOut(
                f"The S3 endpoint {self.endpoint_url} (bucket {self._bucket!r}) did not answer "
                f"in time to {action} {where}: {err}. The server is hung or overloaded; check "
                "it (FACTORY_STORE_READ_TIMEOUT_S and FACTORY_STORE_ATTEMPTS set how long to "
                "wait). Rerunning the order once it answers completes the remaining work."
            ) from err
        except (botocore.exceptions.ConnectionError, HTTPClientError) as err:
            raise self._unreachable(err) from err
        except (NoCredentialsError, PartialCredentialsError) as err:
            raise self._bad_credentials(str(err)) from err
        except ClientError as err:
            raise self._client_error(err, action, where) from err
        except BotoCoreError as err:
            raise StoreError(f"Cannot {action} {where}: {err}") from err

    def _client_error(self, err: ClientError, action: str, where: str) -> StoreError:
        code = _error_code(err)
        if code == "NoSuchBucket" or (code == "404" and action == "reach"):
            return StoreUnavailable(
                f"The bucket {self._bucket!r} does not exist at {self.endpoint_url}. Create it "
                f"(for example `aws --endpoint-url {self.endpoint_url} s3 mb "
                f"s3://{self._bucket}`) or point --store at an existing bucket."
            )
        if code in _CREDENTIAL_CODES:
            return self._bad_credentials(f"the server refused them ({code})")
        if code in _SERVER_DOWN_CODES:
            return StoreUnavailable(
                f"The S3 server at {self.endpoint_url} keeps failing ({code}) for bucket "
                f"{self._bucket!r}. Check its health; rerunning the order once it is back "
                "completes the remaining work."
            )
        message = err.response.get("Error", {}).get("Message", "")
        return StoreError(f"Cannot {action} {where}: {code} {message}".rstrip())

    def _unreachable(self, err: Exception) -> StoreUnavailable:
        return StoreUnavailable(
            f"Cannot reach the S3 endpoint {self.endpoint_url} (bucket {self._bucket!r}): "
            f"{err}. Check that the server is running and that --store and "
            "AWS_ENDPOINT_URL point at it; rerunning the order once it is back completes "
            "the remaining work."
        )

    def _bad_credentials(self, detail: str) -> StoreUnavailable:
        return StoreUnavailable(
            f"S3 credentials problem at {self.endpoint_url} for bucket {self._bucket!r}: "
            f"{detail}. Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE and "
            "its credentials, and that they may read and write this bucket."
        )


def _make_client(
    endpoint_url: str | None,
    profile: str | None,
    region: str | None,
    max_attempts: int | None,
    connect_timeout: float,
    read_timeout: float,
) -> Any:
    config = Config(
        retries={
            "mode": "standard",
            "max_attempts": max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS", "3")),
        },
        # Path style and SigV4 are what S3-compatible servers accept; virtual hosts
        # need DNS for every bucket, and SeaweedFS rejects SigV2 presigned PUTs.
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as err:
        raise StoreUnavailable(
            f"{err}. Set AWS_PROFILE (or the profile argument) to a profile that exists in "
            "~/.aws/config, or unset it to use the default credentials chain."
        ) from err
    try:
        return session.client("s3", endpoint_url=endpoint_url, config=config)
    except ValueError as err:
        raise BadInput(
            f"{err} (from the endpoint argument or AWS_ENDPOINT_URL): write it with its "
            "scheme, for example http://127.0.0.1:8333."
        ) from err


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))
