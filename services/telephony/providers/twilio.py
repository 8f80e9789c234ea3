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


DIAL_OUTCOME = {"completed": "answered", "answered": "answered", "busy": "busy",
                "no-answer": "no_answer", "failed": "failed", "canceled": "canceled"}


def _int(text):
    return int(text) if (text or "").isdigit() else None


def to_canonical(p, settings):
    """Twilio's usual inbound flow is TwiML <Dial>: Twilio itself answers the parent call
    (its "in-progress" is no human), and each phone dialled is a child leg
    (Direction outbound-dial, ParentCallSid). So an inbound parent never answers the call:
    a child leg that was answered does, or the <Dial> action's DialCallStatus; an inbound
    call no human answered ends missed."""
    require(p, "CallSid")
    if p.get("DialCallStatus"):
        return _dial_action(p)
    require(p, "CallStatus")
    status = p["CallStatus"].strip().lower()
    if status not in STATUS:
        raise ValidationFailed("Invalid input", {"fields": {"CallStatus": [f"Unknown status {status!r}."]}})
    state, outcome = STATUS[status]
    inbound = p.get("Direction", "inbound") == "inbound"
    agent = _agent(p.get("To")) or _agent(p.get("From"))
    duration = _int(p.get("CallDuration") or p.get("Duration"))
    at = _timestamp(p.get("Timestamp"))
    event_id = f"twilio:{p['CallSid']}:{status}:{p.get('SequenceNumber', '')}"
    child = bool(p.get("ParentCallSid"))
    if child:
        # one leg of its parent call: never its direction or numbers; answered, it answers
        # the call; its end does not end the call
        leg = {"provider": "twilio", "call_id": p["ParentCallSid"], "leg_id": p["CallSid"],
               "extension": agent,
               "hangup_cause": p.get("SipResponseCode") and f"SIP {p['SipResponseCode']}"}
        if state == "ended" and outcome == "answered":
            # a completed leg was answered (its in-progress callback may not be subscribed)
            answered = {**leg, "event_id": event_id + ":answered", "state": "answered",
                        "occurred_at": _before(at, duration)}
            return [clean(answered), clean({**leg, "event_id": event_id, "state": "ended",
                                            "outcome": "answered", "occurred_at": at,
                                            "talk_s": duration,
                                            "recording_url": p.get("RecordingUrl")})]
        return [clean({**leg, "event_id": event_id, "state": state, "outcome": outcome,
                       "occurred_at": at})]
    if inbound and state == "answered":
        state = "update"  # Twilio answered (TwiML runs): no one has talked yet
    if inbound and outcome == "answered":
        outcome = None  # ended: answered only if a leg was (derived from the record)
    return [clean({
        "event_id": event_id, "provider": "twilio", "call_id": p["CallSid"],
        "direction": "inbound" if inbound else "outbound",
        "from": p.get("From"), "to": p.get("To"),
        "extension": agent, "state": state, "outcome": outcome, "occurred_at": at,
        # inbound: the parent's duration is the whole call; outbound: from the answer
        "duration_s": duration if inbound else None,
        "talk_s": None if inbound else duration,
        "recording_url": p.get("RecordingUrl"),
        "hangup_cause": p.get("SipResponseCode") and f"SIP {p['SipResponseCode']}",
    })]


def _before(at, seconds):
    if not at or not seconds:
        return at
    from datetime import datetime, timedelta
    return (datetime.fromisoformat(at) - timedelta(seconds=seconds)).isoformat()


def _dial_action(p):
    """The <Dial> action callback (posted on the parent call): how the dialled leg ended."""
    status = p["DialCallStatus"].strip().lower()
    outcome = DIAL_OUTCOME.get(status, "failed")
    leg_id = p.get("DialCallSid") or f"{p['CallSid']}-dial"
    base = {"provider": "twilio", "call_id": p["CallSid"], "leg_id": leg_id,
            "extension": _agent(p.get("DialCallTo") or ""),
            "event_id": f"twilio:{leg_id}:dial:{status}"}
    out = []
    talk = _int(p.get("DialCallDuration"))
    if outcome == "answered":
        out.append(clean({**base, "event_id": base["event_id"] + ":answered",
                          "state": "answered"}))
    out.append(clean({**base, "state": "ended", "outcome": outcome,
                      "talk_s": talk if outcome == "answered" else None}))
    return out


def is_dial_action(payload):
    return bool(payload.get("DialCallStatus"))
