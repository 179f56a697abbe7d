"""Local and S3 locations behind one small API (pyarrow.fs for files, boto3 for buckets).

A location ("URI") is either a local path (``/data/out``, ``out/``, ``file:///data/out``) or
``s3://bucket/prefix``. The S3 endpoint comes from the ``endpoint`` argument, else
``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else AWS itself; keys come from the usual AWS
variables (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) and the region from ``AWS_REGION`` or
``AWS_DEFAULT_REGION`` (``us-east-1`` when unset). Addressing is path-style, which S3-compatible
servers (SeaweedFS, MinIO) expect.

Writes are atomic: locally the bytes go to a hidden temporary file in the destination folder,
which is then renamed over the destination; an S3 object appears only when its upload completes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import shutil
import time
import uuid
from collections.abc import Callable
from typing import TypeVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

__all__ = [
    "Store",
    "S3Settings",
    "is_s3",
    "join",
    "s3_settings",
    "filesystem",
    "write_bytes",
    "read_bytes",
    "exists",
    "list_files",
    "delete",
    "move",
    "delete_tree",
    "fetch_to_local",
    "s3_client",
    "ensure_bucket",
    "PreconditionFailed",
    "put_if_absent",
    "put_if_match",
    "read_with_token",
    "is_transient",
    "with_retries",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3-compatible server.

    Attributes:
        endpoint: ``http(s)://host:port`` or None for AWS.
        region: signing region.
        access_key: explicit key, or None to use the AWS credential chain.
        secret_key: explicit secret, or None.
    """

    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None


def is_s3(uri: str | os.PathLike) -> bool:
    """True for ``s3://`` locations."""
    return str(uri).startswith("s3://")


def join(uri: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a local path or an ``s3://`` URI (always with ``/``)."""
    base = str(uri)
    if is_s3(base):
        out = base.rstrip("/")
        for p in parts:
            out = out + "/" + str(p).strip("/")
        return out
    return str(Path(_strip_file_scheme(base)).joinpath(*parts))


def _strip_file_scheme(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def s3_settings(endpoint: str | None = None) -> S3Settings:
    """Settings from an explicit endpoint or the AWS environment variables (see module docstring)."""
    ep = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return S3Settings(
        endpoint=ep,
        region=region,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID") or None,
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
    )


@lru_cache(maxsize=8)
def _s3_filesystem(settings: S3Settings) -> pafs.S3FileSystem:
    kwargs: dict = {"region": settings.region, "force_virtual_addressing": False}
    if settings.endpoint:
        parsed = urlparse(settings.endpoint if "://" in settings.endpoint else f"http://{settings.endpoint}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"S3 endpoint must look like http://host:port; got {settings.endpoint!r}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
    if settings.access_key and settings.secret_key:
        kwargs["access_key"] = settings.access_key
        kwargs["secret_key"] = settings.secret_key
    return pafs.S3FileSystem(**kwargs)


def filesystem(uri: str | os.PathLike, endpoint: str | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for ``uri`` and the path inside it.

    Args:
        uri: local path or ``s3://bucket/key``.
        endpoint: S3 endpoint overriding the environment.

    Returns:
        ``(fs, path)``: ``path`` is absolute for local files and ``bucket/key`` for S3.
    """
    text = str(uri)
    if is_s3(text):
        rest = text[len("s3://") :].strip("/")
        if not rest:
            raise ValueError(f"S3 location must name a bucket: got {text!r}")
        return _s3_filesystem(s3_settings(endpoint)), rest
    if "://" in text and not text.startswith("file://"):
        raise ValueError(f"unsupported location {text!r}: expected a local path or s3://bucket/prefix")
    return pafs.LocalFileSystem(), str(Path(_strip_file_scheme(text)).resolve())


def write_bytes(uri: str | os.PathLike, data: bytes, endpoint: str | None = None) -> str:
    """Write ``data`` to ``uri`` atomically (temp file + rename locally, one PUT on S3).

    Returns:
        The location written.
    """
    text = str(uri)
    if is_s3(text):
        fs, path = filesystem(text, endpoint)
        with fs.open_output_stream(path) as f:
            f.write(data)
        return text
    path = Path(_strip_file_scheme(text))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return str(path)


def read_bytes(uri: str | os.PathLike, endpoint: str | None = None) -> bytes:
    """Read a whole file or object; ``FileNotFoundError`` names the location when absent."""
    fs, path = filesystem(uri, endpoint)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{uri}: no such file or object") from exc
    except OSError as exc:
        if "does not exist" in str(exc) or "NoSuchKey" in str(exc) or "Path does not exist" in str(exc):
            raise FileNotFoundError(f"{uri}: no such file or object") from exc
        raise


def exists(uri: str | os.PathLike, endpoint: str | None = None) -> bool:
    """True when a file/object or a folder/prefix exists at ``uri``."""
    fs, path = filesystem(uri, endpoint)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(uri: str | os.PathLike, suffix: str | None = None, endpoint: str | None = None) -> list[str]:
    """Files (recursively) under a folder or prefix, as locations of the same kind, sorted.

    Hidden names (a path part starting with ``.`` or ``_``) are skipped, as pyarrow datasets do.
    A missing folder gives an empty list.
    """
    text = str(uri)
    fs, path = filesystem(text, endpoint)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return []
    if info.type == pafs.FileType.File:
        return [text]
    out = []
    for fi in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        if fi.type != pafs.FileType.File:
            continue
        rel = posixpath.relpath(fi.path.replace(os.sep, "/"), path.replace(os.sep, "/"))
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        if suffix and not fi.path.endswith(suffix):
            continue
        out.append(join(text, *rel.split("/")))
    return sorted(out)


def delete(uri: str | os.PathLike, endpoint: str | None = None) -> None:
    """Delete one file/object; a missing one is not an error."""
    fs, path = filesystem(uri, endpoint)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def move(src: str | os.PathLike, dst: str | os.PathLike, endpoint: str | None = None) -> str:
    """Move one file/object: a rename locally (atomic on one filesystem), copy + delete on S3.

    On S3 the destination object appears whole when the server-side copy completes.

    Returns:
        The destination location.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: ``src`` and ``dst`` are not both local or both ``s3://``.
    """
    if is_s3(src) != is_s3(dst):
        raise ValueError(f"move needs two local paths or two s3:// locations; got {src!r} -> {dst!r}")
    fs, src_path = filesystem(src, endpoint)
    _, dst_path = filesystem(dst, endpoint)
    if fs.get_file_info(src_path).type != pafs.FileType.File:
        raise FileNotFoundError(f"{src}: no such file or object")
    if not is_s3(src):
        Path(dst_path).parent.mkdir(parents=True, exist_ok=True)
        os.replace(src_path, dst_path)
    else:
        fs.copy_file(src_path, dst_path)
        fs.delete_file(src_path)
    return str(dst)


def delete_tree(uri: str | os.PathLike, endpoint: str | None = None) -> None:
    """Delete a folder/prefix and everything below it; a missing one is not an error."""
    fs, path = filesystem(uri, endpoint)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass


def fetch_to_local(uri: str | os.PathLike, workdir: str | os.PathLike, endpoint: str | None = None) -> Path:
    """A local path holding ``uri``: local paths are returned as they are, S3 objects/prefixes downloaded.

    Args:
        uri: a file or folder (a DICOM series folder, a NIfTI file, a PNG).
        workdir: folder to download into (the caller deletes it).

    Raises:
        FileNotFoundError: nothing exists at ``uri``.
    """
    text = str(uri)
    if not is_s3(text):
        p = Path(_strip_file_scheme(text))
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        return p
    fs, path = filesystem(text, endpoint)
    info = fs.get_file_info(path)
    dest_root = Path(workdir) / uuid.uuid4().hex
    if info.type == pafs.FileType.File:
        dest = dest_root / posixpath.basename(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(path) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return dest
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{text}: no such object or prefix")
    dest_root.mkdir(parents=True, exist_ok=True)
    for fi in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        if fi.type != pafs.FileType.File:
            continue
        rel = posixpath.relpath(fi.path, path)
        dest = dest_root.joinpath(*rel.split("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(fi.path) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return dest_root


def s3_client(endpoint: str | None = None):
    """A boto3 S3 client with path-style addressing for ``endpoint`` (or the environment's)."""
    import boto3
    from botocore.config import Config

    settings = s3_settings(endpoint)
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint,
        region_name=settings.region,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def ensure_bucket(uri: str, endpoint: str | None = None) -> None:
    """Create the bucket of an ``s3://`` location when it does not exist (no-op for local paths)."""
    if not is_s3(uri):
        return
    bucket = uri[len("s3://") :].split("/", 1)[0]
    client = s3_client(endpoint)
    try:
        client.head_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001 - botocore raises ClientError subclasses per server
        log.info("creating bucket %s", bucket)
        client.create_bucket(Bucket=bucket)


@dataclass(frozen=True)
class Store:
    """A location bound to its S3 endpoint: every path below it is given relative to ``root``.

    ``Store("s3://bucket/out", "http://127.0.0.1:8333").write_bytes("runs/summary.json", data)``
    replaces passing the endpoint to every call. Relative paths use ``/``; an empty path is the root.

    Attributes:
        root: a local folder or ``s3://bucket/prefix``.
        endpoint: S3 endpoint (None: the AWS variables, see :func:`s3_settings`).
    """

    root: str
    endpoint: str | None = None

    def uri(self, *parts: str) -> str:
        """The location of ``parts`` below the root (the root itself when none is given)."""
        clean = [p for part in parts for p in str(part).split("/") if p]
        return join(self.root, *clean) if clean else str(self.root)

    def child(self, *parts: str) -> "Store":
        """The store rooted at ``parts`` below this one, with the same endpoint."""
        return Store(self.uri(*parts), self.endpoint)

    @property
    def is_s3(self) -> bool:
        return is_s3(self.root)

    # Every call is retried on transient errors (timeouts, dropped connections, 5xx, throttling).
    def write_bytes(self, path: str, data: bytes) -> str:
        return with_retries(lambda: write_bytes(self.uri(path), data, self.endpoint), what="write")

    def read_bytes(self, path: str) -> bytes:
        return with_retries(lambda: read_bytes(self.uri(path), self.endpoint), what="read")

    def exists(self, path: str = "") -> bool:
        return with_retries(lambda: exists(self.uri(path), self.endpoint), what="stat")

    def list_files(self, path: str = "", suffix: str | None = None) -> list[str]:
        """Visible files below ``path`` as full locations (see :func:`list_files`)."""
        return with_retries(lambda: list_files(self.uri(path), suffix, self.endpoint), what="list")

    def delete(self, path: str) -> None:
        with_retries(lambda: delete(self.uri(path), self.endpoint), what="delete")

    def delete_tree(self, path: str = "") -> None:
        with_retries(lambda: delete_tree(self.uri(path), self.endpoint), what="delete")

    def move(self, src: str, dst: str) -> str:
        return with_retries(lambda: move(self.uri(src), self.uri(dst), self.endpoint), what="move")

    def put_if_absent(self, path: str, data: bytes) -> str:
        return with_retries(lambda: put_if_absent(self.uri(path), data, self.endpoint), what="conditional write")

    def put_if_match(self, path: str, data: bytes, token: str) -> str:
        return with_retries(lambda: put_if_match(self.uri(path), data, token, self.endpoint), what="conditional write")

    def read_with_token(self, path: str) -> tuple[bytes, str]:
        return with_retries(lambda: read_with_token(self.uri(path), self.endpoint), what="read")


# ----------------------------------------------------------------------------- conditional writes


class PreconditionFailed(Exception):
    """A conditional write found the object changed (or present) since it was read."""


def _s3_bucket_key(uri: str) -> tuple[str, str]:
    bucket, _, key = str(uri)[len("s3://") :].partition("/")
    return bucket, key


def _is_precondition_error(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def _local_token(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_if_absent(uri: str, data: bytes, endpoint: str | None = None) -> str:
    """Create ``uri`` holding ``data`` only if nothing is there; returns a token for :func:`put_if_match`.

    Locally the bytes are written to a temporary file that is hard-linked to the name (the link
    fails when the name exists, so a reader never sees a partial file); on S3 a PUT with
    ``If-None-Match: *``.

    Raises:
        FileExistsError: something is already at ``uri``.
    """
    if is_s3(uri):
        bucket, key = _s3_bucket_key(uri)
        try:
            return s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")["ETag"]
        except Exception as exc:  # noqa: BLE001 - botocore's ClientError
            if _is_precondition_error(exc):
                raise FileExistsError(f"{uri} exists") from None
            raise
    path = Path(_strip_file_scheme(str(uri)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        tmp.write_bytes(data)
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _local_token(data)


def read_with_token(uri: str, endpoint: str | None = None) -> tuple[bytes, str]:
    """The bytes at ``uri`` and the token a conditional replace needs (S3 ETag, else a content hash)."""
    if is_s3(uri):
        bucket, key = _s3_bucket_key(uri)
        try:
            obj = s3_client(endpoint).get_object(Bucket=bucket, Key=key)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"{uri}: no such file or object") from None
            raise
        return obj["Body"].read(), obj["ETag"]
    data = read_bytes(uri)
    return data, _local_token(data)


def put_if_match(uri: str, data: bytes, token: str, endpoint: str | None = None) -> str:
    """Replace ``uri`` with ``data`` only if it still holds what ``token`` was read from; returns the new token.

    S3: a PUT with ``If-Match: <ETag>``. Locally: the current file is first renamed to a name of
    this call's own (one caller wins that rename), compared with the token, then replaced or put back.

    Raises:
        PreconditionFailed: the object changed or disappeared since ``token`` was read.
    """
    if is_s3(uri):
        bucket, key = _s3_bucket_key(uri)
        try:
            return s3_client(endpoint).put_object(Bucket=bucket, Key=key, Body=data, IfMatch=token)["ETag"]
        except Exception as exc:  # noqa: BLE001
            if _is_precondition_error(exc) or getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise PreconditionFailed(f"{uri} changed since it was read") from None
            raise
    path = Path(_strip_file_scheme(str(uri)))
    claimed = path.parent / f".{path.name}.claim-{uuid.uuid4().hex}"
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        raise PreconditionFailed(f"{uri} changed since it was read") from None
    if _local_token(claimed.read_bytes()) != token:
        os.rename(claimed, path)
        raise PreconditionFailed(f"{uri} changed since it was read")
    try:
        return put_if_absent(str(path), data)
    except FileExistsError:
        raise PreconditionFailed(f"{uri} was created by another writer meanwhile") from None
    finally:
        claimed.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- transient errors

_TRANSIENT_CODES = {"500", "502", "503", "504", "RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "Throttling", "ThrottlingException", "InternalError", "ServiceUnavailable"}
_TRANSIENT_TEXT = ("timed out", "timeout", "connection reset", "connection refused", "connection aborted", "broken pipe", "temporarily unavailable",
                   "slow down", "slowdown", "service unavailable", "internal error", "throttl", "curl error", "couldn't connect", "could not connect",
                   "connection was closed", "503", "502", "500 ", "504", "network", "endpoint", "unable to connect")


def is_transient(exc: BaseException) -> bool:
    """True for storage errors worth retrying: timeouts, dropped connections, 5xx, throttling."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, PreconditionFailed, FileExistsError)):
        return False
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    if code:
        return code in _TRANSIENT_CODES
    name = type(exc).__name__
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError", "ConnectionError", "TimeoutError"):
        return True
    text = str(exc).lower()
    return isinstance(exc, (OSError, ConnectionError)) and any(t in text for t in _TRANSIENT_TEXT)


def with_retries(call: Callable[[], T], *, attempts: int | None = None, base_s: float = 0.5, what: str = "storage call") -> T:
    """Run ``call``; on a transient error (:func:`is_transient`) wait ``base_s * 2**k`` (capped at 8 s) and retry.

    Gives up after ``attempts`` tries (default ``$MDAFUSE_STORAGE_RETRIES`` or 6: about 15 s of
    waiting, enough for a restarting server) and raises the last error.
    """
    if attempts is None:
        attempts = max(1, int(os.environ.get("MDAFUSE_STORAGE_RETRIES", "6") or 6))
    for k in range(attempts):
        try:
            return call()
        except Exception as exc:
            if k == attempts - 1 or not is_transient(exc):
                raise
            delay = min(8.0, base_s * 2**k)
            log.warning("%s failed (%s); retrying in %.1f s", what, type(exc).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
