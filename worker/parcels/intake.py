"""Parcels in: validation of what producers send, and queueing them in the ledger.

A parcel is refused whole, with one line naming what is wrong, before anything is queued.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from worker import jsondata
from worker.ledger import Ledger
from worker.redaction import redact_text

ALLOWED_KEYS = ("to_agent_id", "task_id", "stream", "type", "headers", "envelope", "attachments")
ATTACHMENT_KEYS = ("content", "filename", "mime_type", "encoding")
ENCODINGS = ("utf-8", "base64")
DEFAULT_TASK = "untasked"
MAX_ID_LENGTH = 200


class ParcelError(ValueError):
    """A parcel that cannot be accepted; the message is one line for whoever sent it."""


@dataclass(frozen=True)
class Attachment:
    name: str
    data: bytes
    filename: str
    mime_type: str
    is_text: bool


def _loads(text: str) -> Any:
    try:
        return jsondata.loads(text)
    except jsondata.JsonRefused as exc:
        raise ParcelError(str(exc)) from None


# A control character: searched in C rather than character by character in Python (ids are
# checked for every parcel at intake and again at delivery).
_CONTROL = re.compile("[\x00-\x1f]")


def _short_id(value: Any, field: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ParcelError(f"{field} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH or _CONTROL.search(value):
        raise ParcelError(
            f"{field} must be at most {MAX_ID_LENGTH} characters, without control characters"
        )
    return value


def validate(parcel: Any, max_size: int, size: int | None = None) -> dict[str, Any]:
    """Checks one parcel and returns it normalised (defaults filled in); raises ParcelError.

    `size`: its size as JSON when already known (a stored parcel), which saves writing out a
    copy of up to POSTMASTER_MAX_PARCEL_SIZE just to measure it. A stored parcel's nesting is
    not walked again either: intake checked it, and it was just parsed back.
    """
    if not isinstance(parcel, dict):
        raise ParcelError("a parcel must be a JSON object")
    unknown = sorted(set(parcel) - set(ALLOWED_KEYS))
    if unknown:
        raise ParcelError(
            f"unknown field {unknown[0]!r}: a parcel has only " + ", ".join(ALLOWED_KEYS)
        )
    to_agent = _short_id(parcel.get("to_agent_id"), "to_agent_id", required=True)
    assert to_agent is not None  # required: refused, never None
    shown = redact_text(to_agent)
    if shown != to_agent:
        # An inbox is addressed by it, so it cannot be redacted on the way: it is refused.
        raise ParcelError(
            f"to_agent_id {shown!r} holds what looks like a secret: an agent id must not be "
            "a credential"
        )
    task_id = _short_id(parcel.get("task_id"), "task_id", required=False) or DEFAULT_TASK
    stream = _short_id(parcel.get("stream"), "stream", required=False) or "default"
    kind = _short_id(parcel.get("type"), "type", required=False) or "message"
    headers = parcel.get("headers", {})
    if not isinstance(headers, dict):
        raise ParcelError("headers must be a JSON object")
    envelope = parcel.get("envelope", {})
    if not isinstance(envelope, dict):
        raise ParcelError("envelope must be a JSON object (with body and metadata)")
    if "metadata" in envelope and not isinstance(envelope["metadata"], dict):
        raise ParcelError("envelope.metadata must be a JSON object")
    attachments = parcel.get("attachments", {})
    if not isinstance(attachments, dict):
        raise ParcelError("attachments must be a JSON object of name -> {content, ...}")
    for name, spec in attachments.items():
        _validate_attachment(name, spec)
    try:
        if size is None:
            jsondata.check(parcel)
    except jsondata.JsonRefused as exc:
        raise ParcelError(f"the parcel is {exc}") from None
    normalised = {
        "to_agent_id": to_agent,
        "task_id": task_id,
        "stream": stream,
        "type": kind,
        "headers": headers,
        "envelope": envelope,
        "attachments": attachments,
    }
    try:
        if size is None:
            size = len(dumps(normalised).encode("utf-8"))
    except UnicodeEncodeError:
        raise ParcelError(
            "a string holds an unpaired surrogate (\\ud800-\\udfff): not text"
        ) from None
    if size > max_size:
        raise ParcelError(
            f"parcel is {size} bytes, over the limit of {max_size} (POSTMASTER_MAX_PARCEL_SIZE)"
        )
    return normalised


def _validate_attachment(name: str, spec: Any) -> None:
    where = f"attachment {name!r}"
    if not name or len(name) > 255 or _CONTROL.search(name):
        raise ParcelError("attachment names must be 1 to 255 characters, no control characters")
    if not isinstance(spec, dict):
        raise ParcelError(f"{where} must be an object with content (and filename, mime_type)")
    unknown = sorted(set(spec) - set(ATTACHMENT_KEYS))
    if unknown:
        raise ParcelError(
            f"{where}: unknown field {unknown[0]!r}; allowed: " + ", ".join(ATTACHMENT_KEYS)
        )
    if "content" not in spec or not isinstance(spec["content"], str):
        raise ParcelError(f"{where} has no content (a string; base64 with encoding=base64)")
    encoding = spec.get("encoding", "utf-8")
    if encoding not in ENCODINGS:
        raise ParcelError(f"{where}: encoding must be one of " + ", ".join(ENCODINGS))
    if encoding == "base64":
        try:
            base64.b64decode(spec["content"], validate=True)
        except (binascii.Error, ValueError):
            raise ParcelError(f"{where}: content is not valid base64") from None
    for key in ("filename", "mime_type"):
        value = spec.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > 255:
            raise ParcelError(f"{where}: {key} must be a non-empty string of at most 255 chars")
        if _CONTROL.search(value) or (key == "filename" and "/" in value):
            raise ParcelError(f"{where}: {key} must not contain '/' or control characters")


def stored_bytes(attachment: Attachment, redact: bool) -> bytes:
    """The bytes the CAS holds for an attachment: text redacted when redaction is on."""
    if redact and attachment.is_text:
        return redact_text(attachment.data.decode("utf-8")).encode("utf-8")
    return attachment.data


def attachments_of(parcel: dict[str, Any]) -> list[Attachment]:
    found = []
    for name, spec in parcel.get("attachments", {}).items():
        is_text = spec.get("encoding", "utf-8") == "utf-8"
        data = spec["content"].encode("utf-8") if is_text else base64.b64decode(spec["content"])
        default_mime = "text/plain" if is_text else "application/octet-stream"
        found.append(
            Attachment(
                name=name,
                data=data,
                filename=spec.get("filename") or name,
                mime_type=spec.get("mime_type") or default_mime,
                is_text=is_text,
            )
        )
    return found


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def parse_input(raw: bytes, max_size: int) -> list[dict[str, Any]]:
    """One JSON parcel, or JSON Lines of parcels; any bad line rejects the whole input."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = raw[: exc.start].count(b"\n") + 1
        raise ParcelError(f"line {at}: not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise ParcelError("no parcel given: the input is empty")
    try:
        whole = _loads(text)
    except (json.JSONDecodeError, ParcelError):
        whole = None
    else:
        return [validate(whole, max_size)]
    parcels = []
    # "\n" only: str.splitlines() also splits on U+2028, U+0085 and others, which JSON allows
    # unescaped inside a string.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            parcels.append(validate(_loads(line), max_size))
        except json.JSONDecodeError as exc:
            raise ParcelError(f"line {number}: not valid JSON ({exc.msg})") from None
        except ParcelError as exc:
            raise ParcelError(f"line {number}: {exc}") from None
    return parcels


def new_parcel_id() -> str:
    return str(uuid.uuid4())


def queue_parcels(
    ledger: Ledger, parcels: list[dict[str, Any]], now: float | None = None
) -> list[str]:
    """Records validated parcels as queued, all or none; returns their new ids in order.

    The columns hold the ids redacted (they are listed and backed up); the raw parcel is kept
    in `payload` only until it is delivered, for the Postmaster and a retry.
    """
    now = ledger.now() if now is None else now
    rows = []
    for parcel in parcels:
        payload = dumps(parcel)
        rows.append(
            (
                new_parcel_id(),
                parcel["to_agent_id"],
                redact_text(parcel["task_id"]),
                redact_text(parcel["type"]),
                redact_text(parcel["stream"]),
                payload,
                len(payload.encode("utf-8")),
                now,
            )
        )
    with ledger.write():
        ledger.executemany(
            "INSERT INTO parcels (id, to_agent_id, task_id, type, stream, state, payload, size,"
            " created_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            rows,
        )
    return [row[0] for row in rows]


def test_parcel(agent: str, now: float | None = None) -> dict[str, Any]:
    """The task card's `ProcessParcel::dispatch(['test' => true], 'task-uuid')`, as a parcel."""
    return {
        "to_agent_id": agent,
        "task_id": f"test-{uuid.uuid4()}",
        "stream": "command.delegation",
        "type": "seer.test",
        "headers": {"sent_by": "seer send-test-parcel"},
        "envelope": {"body": {"test": True}, "metadata": {"sent_at": now or time.time()}},
        "attachments": {
            "hello.txt": {"content": "Seer Ops test parcel.\n", "mime_type": "text/plain"}
        },
    }


def states_of(ledger: Ledger, parcel_ids: tuple[str, ...]) -> dict[str, str]:
    """Each known parcel's state (queued, in_flight, delivered, failed); unknown ids are left
    out. The console watches the test parcels it sent with it."""
    found = {}
    for parcel_id in parcel_ids:
        row = ledger.row("SELECT state FROM parcels WHERE id = ?", (parcel_id,))
        if row:
            found[parcel_id] = row["state"]
    return found
