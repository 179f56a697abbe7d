"""mdafuse.storage on local folders and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import threading

import pytest

from mdafuse import storage


def test_join_and_kind():
    assert storage.join("s3://b/p/", "x", "/y") == "s3://b/p/x/y"
    assert storage.join("/tmp/a", "b", "c") == "/tmp/a/b/c"
    assert storage.is_s3("s3://b") and not storage.is_s3("/s3://b")


def test_local_roundtrip_listing_and_delete(tmp_path):
    root = tmp_path / "out"
    storage.write_bytes(str(root / "a" / "one.bin"), b"1")
    storage.write_bytes(str(root / "b" / "two.parquet"), b"22")
    storage.write_bytes(str(root / "_hidden" / "x.parquet"), b"h")
    assert storage.read_bytes(str(root / "a/one.bin")) == b"1"
    assert storage.list_files(str(root)) == [str(root / "a/one.bin"), str(root / "b/two.parquet")]
    assert storage.list_files(str(root), ".parquet") == [str(root / "b/two.parquet")]
    assert storage.list_files(str(tmp_path / "missing")) == []
    assert storage.exists(str(root / "a")) and not storage.exists(str(root / "zzz"))
    storage.delete(str(root / "a/one.bin"))
    storage.delete(str(root / "a/one.bin"))  # absent: no error
    assert not storage.exists(str(root / "a/one.bin"))
    with pytest.raises(FileNotFoundError, match="one.bin"):
        storage.read_bytes(str(root / "a/one.bin"))


def test_local_write_is_atomic_under_concurrent_readers(tmp_path):
    """Readers never see a partial file: every read is one of the complete versions."""
    target = str(tmp_path / "f.bin")
    versions = [bytes([i]) * 200_000 for i in range(5)]
    storage.write_bytes(target, versions[0])
    seen: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(storage.read_bytes(target))

    t = threading.Thread(target=reader)
    t.start()
    for v in versions[1:] * 3:
        storage.write_bytes(target, v)
    stop.set()
    t.join()
    assert seen and all(s in versions for s in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporaries left


def test_bad_locations():
    with pytest.raises(ValueError, match="unsupported location"):
        storage.filesystem("gs://bucket/x")
    with pytest.raises(ValueError, match="must name a bucket"):
        storage.filesystem("s3://")
    with pytest.raises(ValueError, match="endpoint must look like"):
        storage.filesystem("s3://b/x", endpoint="ftp://host:1")


def test_fetch_local_passthrough(tmp_path):
    f = tmp_path / "x.png"
    f.write_bytes(b"p")
    assert storage.fetch_to_local(str(f), tmp_path) == f
    with pytest.raises(FileNotFoundError, match="nope"):
        storage.fetch_to_local(str(tmp_path / "nope"), tmp_path)


def test_s3_roundtrip(s3_server, tmp_path, monkeypatch):
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    base = f"s3://{s3_server.bucket}/storage-test"
    storage.write_bytes(storage.join(base, "dir/a.txt"), b"alpha")
    storage.write_bytes(storage.join(base, "dir/sub/b.parquet"), b"beta" * 1000)
    assert storage.read_bytes(storage.join(base, "dir/a.txt")) == b"alpha"
    assert storage.list_files(base) == [f"{base}/dir/a.txt", f"{base}/dir/sub/b.parquet"]
    assert storage.list_files(base, ".parquet") == [f"{base}/dir/sub/b.parquet"]
    assert storage.exists(f"{base}/dir/a.txt") and not storage.exists(f"{base}/nothing")
    local = storage.fetch_to_local(f"{base}/dir", tmp_path)
    assert (local / "a.txt").read_bytes() == b"alpha" and (local / "sub/b.parquet").stat().st_size == 4000
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        storage.read_bytes(f"{base}/missing.txt")
    # an explicit endpoint overrides the environment
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    assert storage.read_bytes(f"{base}/dir/a.txt", endpoint=s3_server.endpoint) == b"alpha"
    # new buckets are created on demand, and wrong keys are refused by the server
    storage.ensure_bucket("s3://fresh-bucket/x", endpoint=s3_server.endpoint)
    assert "fresh-bucket" in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(OSError):
        storage.write_bytes(f"{base}/denied.txt", b"x", endpoint=s3_server.endpoint)
    assert os.environ["AWS_ACCESS_KEY_ID"] == s3_server.access_key
