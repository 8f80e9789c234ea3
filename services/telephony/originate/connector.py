"""Click-to-call over the AMI connector's own login (connectors/asterisk/originate.py): the
PBX sees one AMI login whatever the number of telephony replicas. The request is POSTed to
the connector's endpoint (originate_url), signed with the originate secret, else the AMI
secret (contracts.telephony_webhooks); the connector answers the Originate's Response at
once, and `follow` waits there for the OriginateResponse."""
import json
import time

import requests

from contracts.telephony_webhooks import (CONNECTOR_SIGNATURE_HEADER, connector_key,
                                          connector_signature)
from services.telephony.originate import ami

CONNECT_TIMEOUT_S = 3
REQUEST_TIMEOUT_S = 10   # the connector waits up to 5 s for the Originate's Response


def not_configured(settings):
    """Why this adapter cannot be used (None: it can)."""
    if not settings.originate_url:
        return "the AMI connector's endpoint (originate_url) is not set"
    if not connector_key(settings.originate_secret, settings.ami_secret):
        return "neither the originate secret nor the AMI secret is set (the request's key)"
    return None


def _post(settings, path, body, read_timeout):
    data = json.dumps({**body, "at": time.time()}, separators=(",", ":")).encode()
    key = connector_key(settings.originate_secret, settings.ami_secret)
    headers = {"Content-Type": "application/json",
               CONNECTOR_SIGNATURE_HEADER: connector_signature(data, key)}
    url = settings.originate_url.rstrip("/") + path
    return requests.post(url, data=data, headers=headers,
                         timeout=(CONNECT_TIMEOUT_S, read_timeout))


def request(settings, job):
    body = {"call_id": job["call_id"], "wait_s": settings.ami_timeout_s + 5,
            "fields": [list(pair) for pair in ami.originate_fields(settings, job)]}
    try:
        response = _post(settings, "", body, REQUEST_TIMEOUT_S)
    except requests.RequestException as exc:
        return {"status": "failed", "reason": f"AMI connector: {exc.__class__.__name__}"}, None
    if response.status_code != 200:
        return {"status": "failed",
                "reason": f"AMI connector: HTTP {response.status_code} {response.text[:200]}"}, None
    answer = response.json()
    if answer.get("status") != "queued":
        return {"status": "failed", "reason": answer.get("reason")}, None
    return {"status": "queued", "reason": answer.get("reason")}, {"call_id": job["call_id"]}


def follow(settings, session, job):
    """The OriginateResponse, as the connector saw it on its AMI connection."""
    wait_s = settings.ami_timeout_s + 5
    try:
        response = _post(settings, "/result", {"call_id": job["call_id"], "wait_s": wait_s},
                         wait_s + 5)
        found = response.json() if response.status_code == 200 else {}
    except (requests.RequestException, ValueError) as exc:
        return {"status": "unknown", "reason": f"AMI connector: {exc.__class__.__name__}"}
    event = found.get("response") if found.get("done") else None
    if not event or event.get("Response") not in ("Success", "Failure"):
        return {"status": "unknown", "reason": (event or {}).get("error")
                or f"AMI connector: HTTP {response.status_code}"}
    return {"status": ami.final_status(event), "reason": event.get("Reason"),
            "pbx_call_id": event.get("Uniqueid"), "channel": event.get("Channel")}
