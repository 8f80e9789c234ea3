"""Attachments of messenger and SMS messages, fetched from their providers by the
documented calls: WhatsApp Cloud API media (GET /<media id> with the access token answers
a short-lived `url`, fetched with the same token), Telegram's getFile (a `file_path`
under /file/bot<token>/), Twilio's MMS media URLs (HTTP basic auth: the account SID and
auth token). Bytes over the size limit are not kept: the attachment is listed `skipped`."""
import requests

CHUNK = 64 * 1024


class MediaError(Exception):
    pass


def download(http, url, max_bytes, timeout, headers=None, auth=None):
    """-> (bytes or None when over max_bytes, content type, size)."""
    try:
        answer = http.get(url, headers=headers or {}, auth=auth, timeout=timeout, stream=True)
    except requests.RequestException as exc:
        raise MediaError(f"media unreachable: {exc}") from exc
    with answer:
        if answer.status_code >= 400:
            raise MediaError(f"media answered {answer.status_code}")
        content_type = (answer.headers.get("Content-Type") or
                        "application/octet-stream").split(";")[0].strip()
        declared = int(answer.headers.get("Content-Length") or 0)
        if declared > max_bytes:
            return None, content_type, declared
        data, size = bytearray(), 0
        for chunk in answer.iter_content(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                return None, content_type, size
            data += chunk
        return bytes(data), content_type, size


def _json(http, url, timeout, **kwargs):
    try:
        answer = http.get(url, timeout=timeout, **kwargs)
        found = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise MediaError(f"media lookup failed: {exc}") from exc
    if answer.status_code >= 400 or not isinstance(found, dict):
        error = (found.get("error") or {}) if isinstance(found, dict) else {}
        raise MediaError(f"media lookup answered {answer.status_code}: "
                         f"{error.get('message') or found}")
    return found


def whatsapp(http, api_base, token, media_id, max_bytes, timeout):
    headers = {"Authorization": f"Bearer {token or ''}"}
    found = _json(http, f"{api_base.rstrip('/')}/{media_id}", timeout, headers=headers)
    if not found.get("url"):
        raise MediaError("media lookup answered no url")
    if int(found.get("file_size") or 0) > max_bytes:
        return None, found.get("mime_type"), int(found["file_size"])
    data, content_type, size = download(http, found["url"], max_bytes, timeout, headers)
    return data, found.get("mime_type") or content_type, size


def telegram(http, api_base, token, file_id, max_bytes, timeout):
    base = f"{api_base.rstrip('/')}"
    found = _json(http, f"{base}/bot{token}/getFile", timeout, params={"file_id": file_id})
    path = (found.get("result") or {}).get("file_path") if found.get("ok") else None
    if not path:
        raise MediaError(f"getFile answered no file_path: {found.get('description')}")
    return download(http, f"{base}/file/bot{token}/{path}", max_bytes, timeout)


def twilio(http, url, account_sid, auth_token, max_bytes, timeout):
    return download(http, url, max_bytes, timeout, auth=(account_sid, auth_token or ""))


def fetch(getter, meta, max_bytes):
    """(meta with size / skipped, bytes or None): a failed download is listed, not fatal."""
    try:
        data, content_type, size = getter()
    except MediaError as exc:
        return dict(meta, size=None, skipped=str(exc)[:300]), None
    meta = dict(meta, size=size, content_type=meta.get("content_type") or content_type)
    if data is None:
        return dict(meta, skipped=f"over the {max_bytes} bytes limit"), None
    return dict(meta, skipped=None), data
