"""Pseudonyms and scrubbed messages: the one place that decides what identifies a patient.

* :func:`pseudonym`: a salted sha256 of a PatientID, subject or UID; the salt is
  ``$MDAFUSE_PSEUDONYM_SALT`` (:data:`SALT_ENV`; set but empty counts as unset) or a public default.
* :func:`scrub_locations`: error and warning texts with every form of a pair's input locations
  (:func:`location_forms`) and every DICOM UID replaced, before they reach a row, a file or a log.
"""

from __future__ import annotations

import hashlib
import os
import re

__all__ = ["SALT_ENV", "default_salt", "pseudonym", "location_forms", "scrub_locations"]

_UID_RE = re.compile(r"(?<![\w.])[0-2](?:\.\d+){4,}(?![\w.])")


def _is_s3(location: str) -> bool:
    return str(location).startswith("s3://")


SALT_ENV = "MDAFUSE_PSEUDONYM_SALT"


def default_salt() -> str:
    """The pseudonymisation salt: ``$MDAFUSE_PSEUDONYM_SALT`` or a fixed public default.

    The default makes keys reproducible but guessable from a known PatientID; a deployment handling
    real patients should set a secret salt.
    """
    # set but empty (a secret that failed to mount) counts as unset, as the jobs report it
    return os.environ.get(SALT_ENV) or "mdafuse-default-salt"


def pseudonym(patient_id: str, salt: str | None = None, length: int = 16) -> str:
    """Pseudonymous subject key: the first ``length`` hex digits of sha256(salt + PatientID).

    Args:
        patient_id: the DICOM PatientID (never logged or stored by the library).
        salt: secret salt; ``None`` uses :func:`default_salt`.
        length: number of hex digits kept (4 to 64).
    """
    if not 4 <= length <= 64:
        raise ValueError(f"length must be in 4..64; got {length}")
    salt = default_salt() if salt is None else salt
    return hashlib.sha256((salt + str(patient_id)).encode("utf-8")).hexdigest()[:length]


def location_forms(location: str) -> list[str]:
    """The ways an input location can appear in a message, longest first.

    ``s3://bucket/a/b/c`` also appears as ``bucket/a/b/c`` and ``a/b/c`` (boto3, pyarrow), URL-quoted
    (``a%2Fb%2Fc``), and as its parent prefixes ``a/b`` (listing errors); a local path also as its
    resolved form and its parent folders below the first level.
    """
    from urllib.parse import quote

    loc = str(location or "").strip()
    if not loc:
        return []
    forms = {loc}
    if _is_s3(loc):
        bucket, _, key = loc[len("s3://") :].partition("/")
        key = key.strip("/")
        if key:
            parts = key.split("/")
            forms |= {f"{bucket}/{key}", key, quote(key), quote(key, safe=""), quote(f"{bucket}/{key}", safe="")}
            forms |= {"/".join(parts[:n]) for n in range(2, len(parts))}
    else:
        for path in {loc.rstrip("/"), os.path.realpath(loc)}:
            forms.add(path)
            parts = [p for p in path.split(os.sep) if p]
            forms |= {os.sep + os.sep.join(parts[:n]) for n in range(2, len(parts))}
            forms.add(quote(path))
    return sorted((f for f in forms if len(f) > 1), key=len, reverse=True)


def scrub_locations(message: str, locations: dict[str, str], work: str = "", uids: tuple[str, ...] = ()) -> str:
    """Remove identifying text from a message: input locations, a work folder and DICOM UIDs.

    Args:
        message: the text (an error or warning).
        locations: role -> input location (e.g. ``{"mr": ..., "pet": ...}``); every form of it
            (:func:`location_forms`) becomes ``<role>``, a file name after it ``<role>/<file>``,
            and an S3 location's bucket name ``<bucket>``.
        work: a local work folder, replaced by ``<tmp>``.
        uids: UIDs known to the caller; these and every other dotted UID of 5+ components become
            ``<uid:XXXXXXXX>``, a short salted pseudonym that stays the same for the same UID.
    """
    subs = [(work, "<tmp>")] if work else []
    subs += [(uid, f"<uid:{pseudonym('uid|' + uid, length=8)}>") for uid in uids if uid]
    buckets = set()
    for role, loc in locations.items():
        subs += [(form, f"<{role}>") for form in location_forms(loc)]
        if _is_s3(str(loc or "")):
            buckets.add(str(loc)[len("s3://") :].split("/", 1)[0])
    for old, new in sorted(subs, key=lambda s: -len(s[0])):
        message = message.replace(old, new)
    roles = "|".join(re.escape(r) for r in [*locations, "tmp"])
    message = re.sub(rf"<({roles})>/[^\s'\"`,;:()\[\]]+", r"<\1>/<file>", message)
    for bucket in buckets:
        message = re.sub(rf"(?<![\w.-]){re.escape(bucket)}(?![\w.-])", "<bucket>", message)
    return _UID_RE.sub(lambda m: f"<uid:{pseudonym('uid|' + m.group(0), length=8)}>", message)
