"""One writer per run: a lease file under ``OUT/runs/cohort=C/run=R/lease.json``.

An attempt creates the lease atomically (S3: a PUT with ``If-None-Match: *``; local disk: a hard
link, which fails when the name exists) and refreshes its ``heartbeat_at`` every ``heartbeat_s``
seconds with a conditional replace (S3 ``If-Match``), so it notices when another attempt took the
lease over. A second attempt on the same run finds the lease and

* stops with one line naming the live attempt (the default), or
* waits for it to end (``wait_s``), or
* takes it over when its heartbeat is older than ``stale_s`` (the attempt died without releasing it),
  again with a conditional replace, so that of two attempts taking over only one wins.

The lease holds the attempt id, host, process id and times: nothing about the cohort's patients.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from mdafuse.storage import PreconditionFailed, Store

log = logging.getLogger(__name__)

__all__ = ["RunLease", "LeaseHeld", "LEASE_FILE"]

LEASE_FILE = "lease.json"


class LeaseHeld(RuntimeError):
    """Another live attempt holds the run's lease; the message names it in one line."""


@dataclass
class _Held:
    token: str
    body: dict


class RunLease:
    """The lease of one run, held by one attempt.

    Args:
        run_dir: the run's folder (``OUT/runs/cohort=C/run=R``).
        attempt: this attempt's id.
        heartbeat_s: seconds between heartbeats.
        stale_s: a lease whose heartbeat is older than this is taken over.
        name: the lease's file name in ``run_dir`` (one per job kind: fusion and tracking runs of
            the same id do not exclude each other).
    """

    def __init__(self, run_dir: Store, attempt: str, heartbeat_s: float = 10.0, stale_s: float = 60.0, name: str = LEASE_FILE) -> None:
        if stale_s <= 2 * heartbeat_s:
            raise ValueError(f"stale_s ({stale_s}) must exceed twice heartbeat_s ({heartbeat_s})")
        self.run_dir = run_dir
        self.name = name
        self.attempt = attempt
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.taken_over_from: str | None = None
        self._held: _Held | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _body(self, started: str | None = None) -> dict:
        now = time.time()
        return {
            "attempt": self.attempt,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": started or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "heartbeat_at": now,
            "heartbeat_s": self.heartbeat_s,
        }

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lease, waiting up to ``wait_s`` seconds for a live holder to end.

        Raises:
            LeaseHeld: a live attempt still holds it after ``wait_s``.
        """
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            body = self._body()
            try:
                token = self.run_dir.put_if_absent(self.name, json.dumps(body).encode())
                self._held = _Held(token, body)
                return
            except FileExistsError:
                pass
            try:
                raw, token = self.run_dir.read_with_token(self.name)
                current = json.loads(raw)
            except FileNotFoundError:
                continue  # released meanwhile: try again at once
            except ValueError:
                current, token = {}, None
            age = time.time() - float(current.get("heartbeat_at", 0.0))
            if token is not None and age > self.stale_s:
                try:
                    new_token = self.run_dir.put_if_match(self.name, json.dumps(body).encode(), token)
                except PreconditionFailed:
                    continue  # refreshed or taken by someone else meanwhile: look again
                self._held = _Held(new_token, body)
                self.taken_over_from = str(current.get("attempt", "unknown"))
                log.warning("took over the run's lease from attempt %s (no heartbeat for %.0f s)", self.taken_over_from, age)
                return
            if time.monotonic() >= deadline:
                raise LeaseHeld(
                    f"run is in use by attempt {current.get('attempt', 'unknown')} on {current.get('host', '?')} (pid {current.get('pid', '?')}), "
                    f"started {current.get('started_at', '?')}, last heartbeat {age:.0f} s ago; wait for it (--wait-for-lease S), "
                    f"or rerun once its heartbeat is older than {self.stale_s:.0f} s to take the run over"
                )
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))

    def beat(self) -> bool:
        """Refresh the heartbeat once; False (and ``lost``) when another attempt took the lease."""
        with self._lock:
            if self._held is None or self.lost:
                return False
            body = dict(self._held.body, heartbeat_at=time.time())
            try:
                token = self.run_dir.put_if_match(self.name, json.dumps(body).encode(), self._held.token)
            except PreconditionFailed:
                self.lost = True
                log.error("the run's lease was taken over by another attempt; this attempt stops writing")
                return False
            self._held = _Held(token, body)
            return True

    def start_heartbeat(self) -> None:
        """Refresh the heartbeat every ``heartbeat_s`` seconds in a thread until :meth:`release`."""

        def loop() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    if not self.beat():
                        return
                except Exception as exc:  # noqa: BLE001 - a storage hiccup: the next beat tries again
                    log.warning("lease heartbeat failed (%s)", type(exc).__name__)

        self._thread = threading.Thread(target=loop, name="mdafuse-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if it is still this attempt's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_s + 5)
        with self._lock:
            if self._held is None or self.lost:
                return
            try:
                raw, token = self.run_dir.read_with_token(self.name)
                if token == self._held.token and json.loads(raw).get("attempt") == self.attempt:
                    self.run_dir.delete(self.name)
            except Exception as exc:  # noqa: BLE001 - a lease left behind goes stale and is taken over
                log.warning("could not release the run's lease (%s); the next attempt takes it over once stale", type(exc).__name__)
            self._held = None

    def __enter__(self) -> "RunLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
