"""`Idempotency-Key` on writes (POST, PATCH, PUT, DELETE), per caller (docs/auth.md).

The first request with a key claims it (a pending document in the gateway's `idempotency`
collection, `_id` = hash of caller and key) and runs; its answer (status, body, the headers
that matter) is stored for 24 h. Within that time the same key from the same caller:
- with the same request (method, path, query, body) gets the stored answer again, with
  `Idempotent-Replayed: true`, and nothing runs twice;
- with another request gets 422 `idempotency_key_reused`;
- while the first is still running, waits for its answer (up to `CRM_IDEMPOTENCY_WAIT_S`),
  then gets 409 `idempotency_in_progress` with `Retry-After`: never a second write.
Answers that say nothing about the write are not kept, so a retry runs again: 5xx, 401,
403, 408, 429 and streamed answers. A claim whose worker died is taken over after
`CRM_IDEMPOTENCY_LOCK_S`. Public routes (no caller) ignore the header.
"""
import hashlib
import re
import secrets
import time
from datetime import timedelta

from bson import Binary
from flask import Response, current_app, g, request

from crm_common.errors import Conflict, CrmError, ValidationFailed
from crm_common.timeutil import utcnow

HEADER = "Idempotency-Key"
METHODS = ("POST", "PATCH", "PUT", "DELETE")
KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
_KEY = re.compile(KEY_PATTERN)
TTL = timedelta(hours=24)
MAX_STORED_BYTES = 1024 * 1024
KEPT_HEADERS = ("Content-Type", "Location", "Content-Disposition")
NOT_KEPT = (401, 403, 408, 429)


class KeyReused(CrmError):
    code, status = "idempotency_key_reused", 422


class InProgress(Conflict):
    code = "idempotency_in_progress"


def _caller():
    identity = g.get("identity") or {}
    if identity.get("kind") == "api_key":
        return f"key:{identity['api_key_id']}"
    return f"user:{identity['user_id']}" if identity.get("user_id") else None


def _fingerprint():
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string.decode("latin-1")):
        digest.update(part.encode() + b"\0")
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        # a part may come without a name (None): sorted apart from the named ones
        for name, value in sorted(request.form.items(multi=True),
                                  key=lambda i: (i[0] is None, i[0] or "", i[1])):
            digest.update(f"f\0{name}\0{value}\0".encode())
        for name, upload in sorted(request.files.items(multi=True),
                                   key=lambda i: (i[0] is None, i[0] or "")):
            digest.update(f"u\0{name}\0{upload.filename}\0".encode())
            for chunk in iter(lambda: upload.stream.read(1 << 16), b""):
                digest.update(chunk)
            upload.stream.seek(0)
    else:
        digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def begin(route, store_of):
    """Before the route runs: None to run it (the key is claimed, or not used here), or the
    stored answer to give instead. `store_of()` returns the gateway store."""
    key = request.headers.get(HEADER)
    if key is None or route.public or request.method not in METHODS:
        return None
    if not _KEY.match(key):
        raise ValidationFailed("Invalid input", {"fields": {HEADER: [
            "1 to 200 visible ASCII characters."]}})
    caller = _caller()
    if caller is None:
        return None
    store = store_of()
    settings = current_app.extensions["crm.settings"]
    record_id = hashlib.sha256(f"{caller}\0{key}".encode()).hexdigest()
    fingerprint = _fingerprint()
    deadline = time.monotonic() + settings.gateway.idempotency_wait_s
    while True:
        now = utcnow()
        claim = secrets.token_hex(8)
        fresh = {"claim": claim, "state": "pending", "fingerprint": fingerprint,
                 "caller": caller, "created_at": now, "expires_at": now + TTL,
                 "lock_until": now + timedelta(seconds=settings.gateway.idempotency_lock_s)}
        if store.claim_idempotency({"_id": record_id, **fresh}):
            g.idempotency = (record_id, claim)
            return None
        doc = store.get_idempotency(record_id)
        if doc is None:
            continue  # released meanwhile: claim it again
        if doc["expires_at"] <= now or (doc["state"] == "pending" and doc["lock_until"] <= now):
            # an answer older than 24 h (where no TTL monitor ran yet), or a dead claim
            if store.take_over_idempotency(record_id, {"claim": doc["claim"]}, fresh):
                g.idempotency = (record_id, claim)
                return None
            continue
        if doc["fingerprint"] != fingerprint:
            raise KeyReused("This Idempotency-Key was used for another request",
                            {"header": HEADER})
        if doc["state"] == "done":
            return _replay(doc)
        if time.monotonic() >= deadline:
            g.retry_after = 1
            raise InProgress("A request with this Idempotency-Key is still running; retry",
                             {"header": HEADER})
        time.sleep(0.05)


def _replay(doc):
    response = Response(bytes(doc["body"]), status=doc["status"])
    for name, value in (doc.get("headers") or {}).items():
        response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    g.idempotent_replay = True
    return response


def finish(response, store):
    """After the route answered: keep the answer for the key, or free the key."""
    claimed = g.pop("idempotency", None)
    if claimed is None:
        return response
    record_id, claim = claimed
    if (response.status_code >= 500 or response.status_code in NOT_KEPT
            or response.is_streamed):
        store.release_idempotency(record_id, claim)
        return response
    body = response.get_data()
    if len(body) > MAX_STORED_BYTES:
        store.release_idempotency(record_id, claim)
        return response
    headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    store.finish_idempotency(record_id, claim, {
        "status": response.status_code, "body": Binary(body), "headers": headers,
        "finished_at": utcnow()})
    return response


def abandon(store):
    """The request ended without an answer to keep (teardown): free the key."""
    claimed = g.pop("idempotency", None)
    if claimed is not None:
        store.release_idempotency(*claimed)
