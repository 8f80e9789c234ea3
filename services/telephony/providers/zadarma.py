"""Zadarma PBX webhooks (form-encoded NOTIFY_*) -> canonical events.

Signature header: base64 of the *hex* HMAC-SHA1 (PHP hash_hmac's default output) of some
fields of each event concatenated, keyed with the API secret. A GET with `zd_echo` is
Zadarma checking the URL: the answer is the echo value (handled by the gateway route).
NOTIFY_START may be answered with {"redirect": <extension>, "caller_name": ...} to route
the call; `call_start` is taken as UTC (set the PBX time zone to UTC)."""
from contracts.telephony_webhooks import SIGNED_FIELDS, zadarma_signature as signature  # noqa: F401
from contracts.telephony_webhooks import valid_zadarma_signature as valid_signature  # noqa: F401
from crm_common.errors import ValidationFailed
from services.telephony.recordings import ZADARMA_SCHEME as RECORDING_SCHEME
from services.telephony.providers import clean, is_extension, require

DISPOSITION = {"answered": "answered", "busy": "busy", "cancel": "canceled",
               "no answer": "no_answer"}  # anything else (failed, no money, ...) is failed


def _international(number, settings):
    """Zadarma sends numbers in international form without the "+" (e.g. 390212345678)."""
    text = (number or "").strip()
    if text.isdigit() and not is_extension(text, settings):
        return "+" + text
    return text or None


def _start(text):
    return text.strip().replace(" ", "T") if text else None


def to_canonical(p, settings):
    require(p, "event", "pbx_call_id")
    event = p["event"]
    if event not in SIGNED_FIELDS:
        raise ValidationFailed("Invalid input", {"fields": {"event": [f"Unknown event {event!r}."]}})
    p = {**p, **{k: _international(p.get(k), settings)
                 for k in ("caller_id", "called_did", "destination") if p.get(k)}}
    internal = p.get("internal") or None
    base = {"event_id": f"zadarma:{p['pbx_call_id']}:{event}:{internal or ''}",
            "provider": "zadarma", "call_id": p["pbx_call_id"]}
    outcome = DISPOSITION.get((p.get("disposition") or "").lower(), "failed")
    duration = int(p["duration"]) if (p.get("duration") or "").isdigit() else None
    recording = p.get("call_id_with_rec") if p.get("is_recorded") == "1" else None
    if event == "NOTIFY_RECORD":
        recording = p.get("call_id_with_rec")
    # fetched through Zadarma's API by services/telephony/recordings.py
    base["recording_url"] = RECORDING_SCHEME + recording if recording else None
    if event == "NOTIFY_START":
        out = {"direction": "inbound", "from": p.get("caller_id"), "to": p.get("called_did"),
               "state": "ringing", "occurred_at": _start(p.get("call_start"))}
    elif event == "NOTIFY_INTERNAL":
        out = {"direction": "inbound", "from": p.get("caller_id"), "to": p.get("called_did"),
               "state": "ringing", "extension": internal, "leg_id": internal}
    elif event == "NOTIFY_ANSWER":
        out = {"direction": "inbound", "from": p.get("caller_id"), "state": "answered",
               "extension": internal, "leg_id": internal}
    elif event == "NOTIFY_END":
        out = {"direction": "inbound", "from": p.get("caller_id"), "to": p.get("called_did"),
               "state": "ended", "outcome": outcome, "talk_s": duration,
               "extension": internal, "recording_id": recording,
               "hangup_cause": p.get("status_code") and f"status {p['status_code']}"}
    elif event == "NOTIFY_OUT_START":
        out = {"direction": "outbound", "from": p.get("caller_id"), "to": p.get("destination"),
               "state": "ringing", "extension": internal,
               "occurred_at": _start(p.get("call_start"))}
    elif event == "NOTIFY_OUT_END":
        out = {"direction": "outbound", "from": p.get("caller_id"), "to": p.get("destination"),
               "state": "ended", "outcome": outcome, "talk_s": duration,
               "extension": internal, "recording_id": recording,
               "hangup_cause": p.get("status_code") and f"status {p['status_code']}"}
    else:  # NOTIFY_RECORD: the recording is ready
        out = {"state": "update", "recording_id": recording}
    return [clean({**base, **out})]


def reply(answer, payload):
    """NOTIFY_START: route the call to the contact's owner and show the caller's name."""
    if payload.get("event") != "NOTIFY_START" or not answer:
        return {}
    out = {}
    if answer.get("route_to"):
        out["redirect"] = answer["route_to"]
    contact = answer.get("contact") or {}
    if contact.get("name"):
        out["caller_name"] = contact["name"]
    return out
