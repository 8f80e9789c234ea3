"""Generic "HTTP callback URL" click-to-call: POST the request as JSON to a URL the PBX
(or a small bridge in front of it) serves; any 2xx means the PBX took it. The body is
signed like the platform's webhooks: X-CRM-Signature: sha256=<hex HMAC of the body>."""
import hashlib
import hmac
import json

import requests

TIMEOUT_S = 5


def not_configured(settings):
    """Why this adapter cannot be used (None: it can)."""
    return None if settings.originate_url else "TELEPHONY_ORIGINATE_URL is not set"


def request(settings, job):
    if not settings.originate_url:
        return {"status": "failed", "reason": "TELEPHONY_ORIGINATE_URL is not set"}, None
    body = json.dumps({"call_id": job["call_id"], "agent_id": job.get("agent_id"),
                       "extension": job["extension"], "to": job["to"],
                       "caller_id": job.get("caller_id")}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if settings.originate_secret:
        digest = hmac.new(settings.originate_secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-CRM-Signature"] = f"sha256={digest}"
    try:
        response = requests.post(settings.originate_url, data=body, headers=headers,
                                 timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        return {"status": "failed", "reason": f"HTTP: {exc.__class__.__name__}"}, None
    if 200 <= response.status_code < 300:
        return {"status": "requested", "reason": f"HTTP {response.status_code}"}, None
    return {"status": "failed", "reason": f"HTTP {response.status_code}"}, None
