"""Checks before Ray starts: can the job write to OUT and read the cohort? One line per cause.

:func:`check_output` writes and deletes a probe under ``OUT`` (local: the folder, created if
needed; S3: credentials, endpoint, bucket, then a probe object), :func:`check_cohort` reads the
cohort's location. Each raises :class:`PreflightError` whose message names the cause (wrong key,
wrong secret, no credentials, endpoint unreachable, bucket missing, folder not writable, ...).
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from mdafuse import storage

__all__ = ["PreflightError", "check_output", "check_cohort", "describe_s3_error"]


class PreflightError(ValueError):
    """The job cannot start; the message is one line naming the cause (exit status 2)."""


def describe_s3_error(exc: BaseException, endpoint: str | None, what: str) -> str:
    """One line for a boto3/botocore error while doing ``what`` (e.g. "--out s3://b/p")."""
    name = type(exc).__name__
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    where = f"S3 endpoint {endpoint}" if endpoint else "the S3 endpoint (AWS, or AWS_ENDPOINT_URL_S3)"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return f"{what}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile or instance role)"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError") or "Could not connect" in str(exc):
        return f"{what}: {where} is unreachable ({name}); check --s3-endpoint / AWS_ENDPOINT_URL_S3 and the network"
    if code == "InvalidAccessKeyId":
        return f"{what}: the S3 access key (AWS_ACCESS_KEY_ID) is not known to {where}"
    if code == "SignatureDoesNotMatch":
        return f"{what}: the S3 secret key (AWS_SECRET_ACCESS_KEY) does not match the access key"
    if code in ("NoSuchBucket", "404"):
        return f"{what}: the bucket does not exist"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return f"{what}: access denied by {where} (the credentials lack permission)"
    if name == "InvalidEndpoint" or "Invalid endpoint" in str(exc):
        return f"{what}: invalid S3 endpoint {endpoint!r}; expected http(s)://host:port"
    return f"{what}: S3 error {code or name}"


def _bucket_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


def _check_s3_output(uri: str, endpoint: str | None, create_bucket: bool) -> None:
    bucket, prefix = _bucket_prefix(uri)
    if not bucket:
        raise PreflightError(f"--out {uri}: an S3 location must name a bucket (s3://bucket/prefix)")
    what = f"--out {uri}"
    try:
        client = storage.s3_client(endpoint)
    except Exception as exc:  # noqa: BLE001 - botocore raises ValueError for a malformed endpoint
        raise PreflightError(describe_s3_error(exc, endpoint, what)) from None
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except Exception as exc:  # noqa: BLE001 - botocore's exception classes
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code != "NoSuchBucket":
            raise PreflightError(describe_s3_error(exc, endpoint, what)) from None
        if not create_bucket:
            raise PreflightError(f"{what}: bucket {bucket!r} does not exist; create it, or pass --create-bucket") from None
        try:
            client.create_bucket(Bucket=bucket)
        except Exception as exc2:  # noqa: BLE001
            raise PreflightError(describe_s3_error(exc2, endpoint, f"{what} (creating bucket {bucket!r})")) from None
    probe = "/".join(p for p in (prefix, f".mdafuse-probe-{uuid.uuid4().hex}") if p)
    try:
        client.put_object(Bucket=bucket, Key=probe, Body=b"probe")
        client.delete_object(Bucket=bucket, Key=probe)
    except Exception as exc:  # noqa: BLE001
        raise PreflightError(describe_s3_error(exc, endpoint, f"{what} (writing a test object)")) from None


def _check_local_output(path: Path) -> None:
    what = f"--out {path}"
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise PreflightError(f"{what}: {parent} is a file, not a folder")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".mdafuse-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"probe")
        probe.unlink()
    except PermissionError:
        raise PreflightError(f"{what}: folder not writable (permission denied)") from None
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise PreflightError(f"{what}: folder not writable (read-only file system)") from None
        if exc.errno == errno.ENOSPC:
            raise PreflightError(f"{what}: no space left on the device") from None
        raise PreflightError(f"{what}: folder not writable ({os.strerror(exc.errno) if exc.errno else type(exc).__name__})") from None


def check_output(out: str, endpoint: str | None = None, create_bucket: bool = False) -> None:
    """Raise :class:`PreflightError` unless the job can write under ``out``."""
    if storage.is_s3(out):
        _check_s3_output(out, endpoint, create_bucket)
    else:
        _check_local_output(Path(out))


def check_cohort(source: str, endpoint: str | None = None) -> None:
    """Raise :class:`PreflightError` unless the cohort's location can be read."""
    if storage.is_s3(source):
        bucket, key = _bucket_prefix(source)
        try:
            storage.s3_client(endpoint).head_object(Bucket=bucket, Key=key)
        except Exception as exc:  # noqa: BLE001
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey"):
                raise PreflightError(f"COHORT {source}: no such object") from None
            if code == "403":  # HEAD has no error body: ask again with a GET to learn which key failed
                try:
                    storage.s3_client(endpoint).get_object(Bucket=bucket, Key=key, Range="bytes=0-0")
                except Exception as exc2:  # noqa: BLE001
                    raise PreflightError(describe_s3_error(exc2, endpoint, f"COHORT {source}")) from None
            raise PreflightError(describe_s3_error(exc, endpoint, f"COHORT {source}")) from None
        return
    path = Path(source)
    if not path.exists():
        raise PreflightError(f"COHORT {source}: no such manifest or folder")
    if not os.access(path, os.R_OK):
        raise PreflightError(f"COHORT {source}: not readable (permission denied)")
