"""Twilio voice status callbacks (form-encoded) -> canonical events.

Signature: X-Twilio-Signature = base64(HMAC-SHA1(auth token, full URL + every POST
parameter as key + value, sorted by key)). Twilio repeats a callback with the same
parameters, so the event id is built from them (CallSid, CallStatus, SequenceNumber)."""
from email.utils import parsedate_to_datetime

from contracts.telephony_webhooks import twilio_signature as signature  # noqa: F401
from contracts.telephony_webhooks import valid_twilio_signature as valid_signature  # noqa: F401
from crm_common.errors import ValidationFailed
from services.telephony.providers import clean, require

STATUS = {"queued": ("ringing", None), "initiated": ("ringing", None),
          "ringing": ("ringing", None), "in-progress": ("answered", None),
          "answered": ("answered", None), "completed": ("ended", "answered"),
          "busy": ("ended", "busy"), "no-answer": ("ended", "no_answer"),
          "failed": ("ended", "failed"), "canceled": ("ended", "canceled")}


def _agent(address):
    """Twilio Client / SIP endpoints ("client:alice", "sip:101@pbx") name an agent."""
    for prefix in ("client:", "sip:"):
        if (address or "").startswith(prefix):
            return address[len(prefix):].split("@", 1)[0]
    return None


def _timestamp(text):
    try:
        return parsedate_to_datetime(text).isoformat() if text else None
    except (TypeError, ValueError):
        return None


def to_canonical(p, settings):
    require(p, "CallSid", "CallStatus")
    status = p["CallStatus"].strip().lower()
    if status not in STATUS:
        raise ValidationFailed("Invalid input", {"fields": {"CallStatus": [f"Unknown status {status!r}."]}})
    state, outcome = STATUS[status]
    direction = "inbound" if p.get("Direction", "inbound") == "inbound" else "outbound"
    agent = _agent(p.get("To")) or _agent(p.get("From"))
    duration = p.get("CallDuration") or p.get("Duration")
    # a <Dial> child leg (ParentCallSid) is one leg of its parent call: it never sets the
    # call's direction or numbers, and its end does not end the call
    child = bool(p.get("ParentCallSid"))
    return [clean({
        "event_id": f"twilio:{p['CallSid']}:{status}:{p.get('SequenceNumber', '')}",
        "provider": "twilio", "call_id": p.get("ParentCallSid") or p["CallSid"],
        "leg_id": p["CallSid"] if child else None,
        "direction": None if child else direction,
        "from": None if child else p.get("From"), "to": None if child else p.get("To"),
        "extension": agent, "state": state, "outcome": outcome,
        "occurred_at": _timestamp(p.get("Timestamp")),
        # CallDuration counts from the answer: Twilio's talk time
        "talk_s": int(duration) if (duration or "").isdigit() else None,
        "recording_url": p.get("RecordingUrl"),
        "hangup_cause": p.get("SipResponseCode") and f"SIP {p['SipResponseCode']}",
    })]
