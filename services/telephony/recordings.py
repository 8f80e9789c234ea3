"""Call recordings kept by the platform: a provider's recording URL expires, so once a call
event announces one (`recording_url`) the call is marked pending, and the service's timer
fetches it (with the provider's auth, size-limited, a lease per claim, bounded retries with
backoff) into GridFS with an expiry from the retention setting; a sweep deletes what expired.
The gateway serves a recording by ranges (`read_range`, at most CHUNK bytes per RPC).

Zadarma announces only a recording's id: the call's `recording_url` is then
`zadarma:<call_id_with_rec>`, and the file's link is asked of Zadarma's API
(GET /v1/pbx/record/request/, signed with the API key and secret) at fetch time."""
import base64
import ipaddress
import logging
import re
import socket
from datetime import timedelta
from urllib.parse import urlencode, urljoin, urlparse

import requests

from contracts.telephony_webhooks import zadarma_api_authorization
from crm_common.config import get_settings
from crm_common.errors import NotFound
from crm_common.timeutil import utcnow

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024          # bytes per read_range answer (base64 in the JSON reply)
LEASE_S = 120                # a claimed fetch not finished by then is due again
MAX_ATTEMPTS = 6
BACKOFF_S = 30               # 30 s, 60 s, 120 s, ... between attempts
FETCH_TIMEOUT_S = (5, 30)    # connect, read
PER_TICK = 20                # fetches per timer tick at most
MAX_REDIRECTS = 3
_TWILIO_SID = re.compile(r"/Accounts/(AC[0-9a-fA-F]{32})/")
ZADARMA_SCHEME = "zadarma:"
ZADARMA_RECORD_METHOD = "/v1/pbx/record/request/"


def pending_sets(now):
    """What a call record gets when a new recording URL is announced."""
    return {"recording_state": "pending", "recording_due": now, "recording_attempts": 0,
            "recording_error": None}


def _auth(url, settings):
    """Twilio's media needs basic auth (account SID from the URL, the auth token); other
    URLs are fetched as they are."""
    host = (urlparse(url).hostname or "").lower()
    if host == "twilio.com" or host.endswith(".twilio.com"):
        sid = _TWILIO_SID.search(url)
        if sid and settings.twilio_auth_token:
            return (sid.group(1), settings.twilio_auth_token)
    return None


class TooLarge(Exception):
    pass


class UnsafeUrl(Exception):
    pass


def check_target(url):
    """Refuse what the platform's outgoing webhooks refuse (CRM_WEBHOOK_FORBIDDEN_NETS,
    loopback unless CRM_WEBHOOK_ALLOW_LOOPBACK): whoever may post call events must not read
    the platform's own network back through a recording."""
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl(f"not an http(s) URL: {url[:200]}")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"{parts.hostname} does not resolve: {exc}")
    forbidden = get_settings().notifications.webhook_forbidden()
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        for candidate in filter(None, (address, mapped)):
            if any(candidate.version == net.version and candidate in net for net in forbidden):
                raise UnsafeUrl(f"{parts.hostname} resolves to {address}, a forbidden range")


def _get(url, settings):
    """The response to GET url, redirects followed (each target checked)."""
    for _ in range(MAX_REDIRECTS + 1):
        check_target(url)
        response = requests.get(url, auth=_auth(url, settings), stream=True,
                                timeout=FETCH_TIMEOUT_S, allow_redirects=False)
        if not response.is_redirect:
            return response
        response.close()
        url = urljoin(url, response.headers["Location"])
    raise OSError("too many redirects")


def _zadarma_link(record_id, settings):
    """The download link Zadarma's API gives for a recording id (an OSError is retried)."""
    if not settings.zadarma_api_key or not settings.zadarma_api_secret:
        raise OSError("the Zadarma API key and secret are not both set")
    query = urlencode(sorted({"call_id": record_id}.items()))
    url = f"{settings.zadarma_api_url.rstrip('/')}{ZADARMA_RECORD_METHOD}?{query}"
    check_target(url)
    authorization = zadarma_api_authorization(settings.zadarma_api_key,
                                              settings.zadarma_api_secret,
                                              ZADARMA_RECORD_METHOD, query)
    response = requests.get(url, headers={"Authorization": authorization},
                            timeout=FETCH_TIMEOUT_S, allow_redirects=False)
    response.raise_for_status()
    body = response.json()
    link = body.get("link") or next(iter(body.get("links") or []), None)
    if body.get("status") != "success" or not link:
        raise OSError(f"Zadarma API: {body.get('message') or body.get('status')}")
    return link


def download(url, settings):
    """(bytes, content type) of the recording; TooLarge over recording_max_bytes."""
    if url.startswith(ZADARMA_SCHEME):
        url = _zadarma_link(url[len(ZADARMA_SCHEME):], settings)
    limit = settings.recording_max_bytes
    with _get(url, settings) as response:
        response.raise_for_status()
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"{declared} bytes > {limit}")
        parts, size = [], 0
        for part in response.iter_content(64 * 1024):
            size += len(part)
            if size > limit:
                raise TooLarge(f"more than {limit} bytes")
            parts.append(part)
        content_type = (response.headers.get("Content-Type") or "application/octet-stream")
        return b"".join(parts), content_type.split(";")[0].strip()


def fetch_one(store, settings, doc, now):
    url = doc.get("recording_url")
    try:
        data, content_type = download(url, settings)
    except (TooLarge, UnsafeUrl) as exc:
        log.warning("recording of call %s refused: %s", doc["_id"], exc)
        store.recording_result(doc["_id"], url, {"recording_state": "failed",
                                                 "recording_error": str(exc)[:500]})
        return False
    except (requests.RequestException, OSError, ValueError) as exc:
        attempts = doc.get("recording_attempts", 1)
        if attempts >= MAX_ATTEMPTS:
            sets = {"recording_state": "failed", "recording_error": str(exc)[:500]}
        else:
            sets = {"recording_due": now + timedelta(seconds=BACKOFF_S * 2 ** (attempts - 1)),
                    "recording_error": str(exc)[:500]}
        log.warning("recording of call %s not fetched (attempt %d): %s",
                    doc["_id"], attempts, exc)
        store.recording_result(doc["_id"], url, sets)
        return False
    expire_at = now + timedelta(days=settings.recording_retention_days)
    file_id = store.put_recording(doc["_id"], data, content_type, expire_at)
    store.recording_result(doc["_id"], url, {
        "recording_state": "stored", "recording_file": file_id, "recording_error": None,
        "recording_size": len(data), "recording_expire_at": expire_at})
    return True


def fetch_due(store, settings):
    """Fetch the recordings due (run by the service's timer); the number stored."""
    stored = 0
    for _ in range(PER_TICK):
        now = utcnow()
        doc = store.claim_recording(now, now + timedelta(seconds=LEASE_S))
        if doc is None:
            break
        stored += fetch_one(store, settings, doc, now)
    return stored


def sweep(store):
    """Delete the recordings past their expiry; the number deleted."""
    deleted = 0
    while True:
        expired = store.expired_recordings(utcnow())
        for file_id in expired:
            store.delete_recording(file_id)
        deleted += len(expired)
        if len(expired) < 500:
            return deleted


def info(store, call_id):
    """{size, content_type} of the call's stored recording (the call already checked
    visible); NotFound when none is stored."""
    found = store.recording(call_id)
    if found is None:
        raise NotFound("No recording stored for this call", {"id": call_id})
    meta = found.get("metadata") or {}
    return {"size": found["length"], "content_type": meta.get("content_type")
            or "application/octet-stream", "file_id": str(found["_id"])}


def read_range(store, call_id, start, length):
    """Bytes [start, start+length) of the stored recording (at most CHUNK), base64."""
    found = store.recording(call_id)
    if found is None:
        raise NotFound("No recording stored for this call", {"id": call_id})
    start = max(0, int(start))
    length = max(0, min(int(length), CHUNK, found["length"] - start))
    data = store.read_recording(found["_id"], start, length) if length else b""
    return {"size": found["length"], "start": start,
            "data": base64.b64encode(data).decode("ascii")}
