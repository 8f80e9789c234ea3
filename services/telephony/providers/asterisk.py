"""Asterisk AMI events, forwarded as JSON objects (one AMI event, its header names as keys)
by a connector -> canonical events.

Linkedid is the call (shared by every channel of it), Uniqueid one channel (leg). The
caller's channel is the one whose Uniqueid equals the Linkedid: its Hangup ends the call;
an agent leg's DialEnd/Hangup only ends that leg, so a queue ringing several agents stays
one call. AMI has no event ids: a repeat of the same event maps to the same id."""
from datetime import datetime, timezone

from crm_common.errors import ValidationFailed
from services.telephony.providers import channel_extension, clean, is_extension, require

DIAL_STATUS = {"NOANSWER": "no_answer", "BUSY": "busy", "CANCEL": "canceled",
               "CHANUNAVAIL": "failed", "CONGESTION": "failed"}
CDR_DISPOSITION = {"ANSWERED": "answered", "NO ANSWER": "no_answer", "BUSY": "busy",
                   "FAILED": "failed", "CONGESTION": "failed"}
HANDLED = ("Newchannel", "DialBegin", "DialEnd", "BridgeEnter", "Hangup", "Cdr")


def _direction(caller, called, settings):
    caller_internal, called_internal = is_extension(caller, settings), is_extension(called, settings)
    if caller_internal and called_internal:
        return "internal"
    return "outbound" if caller_internal else "inbound"


def _when(p):
    stamp = p.get("Timestamp")
    try:
        return datetime.fromtimestamp(float(stamp), timezone.utc).isoformat() if stamp else None
    except ValueError:
        return None


def _leg_extension(p, prefix, settings):
    number = p.get(f"{prefix}CallerIDNum")
    if is_extension(number, settings):
        return number
    channel = channel_extension(p.get(f"{prefix}Channel" if prefix else "Channel"))
    return channel if is_extension(channel, settings) else None  # "PJSIP/trunk-..." is not


def to_canonical(p, settings):
    require(p, "Event")
    name = p["Event"]
    if name not in HANDLED:
        return []  # other AMI events carry nothing the call log needs
    if name == "Cdr":
        return _cdr(p, settings)
    require(p, "Linkedid", "Uniqueid")
    call, leg = p["Linkedid"], p["Uniqueid"]
    caller_leg = leg == call
    base = {"provider": "asterisk", "call_id": call, "occurred_at": _when(p)}
    event_key = f"asterisk:{name}:{leg}:{p.get('DestUniqueid', '')}:{p.get('DialStatus', '')}"
    caller, called = p.get("CallerIDNum"), p.get("Exten")
    if name == "Newchannel":
        if not caller_leg:
            return []  # agent legs are announced by DialBegin
        direction = _direction(caller, called, settings)
        out = {"state": "ringing", "direction": direction, "from": caller, "to": called,
               "extension": caller if direction == "outbound" else None}
    elif name == "DialBegin":
        extension = _leg_extension(p, "Dest", settings)
        out = {"state": "ringing", "leg_id": p.get("DestUniqueid") if extension else None,
               "extension": extension}
    elif name == "DialEnd":
        extension = _leg_extension(p, "Dest", settings)
        status = (p.get("DialStatus") or "").upper()
        if status == "ANSWER":
            out = {"state": "answered", "extension": extension,
                   "leg_id": p.get("DestUniqueid") if extension else None}
        elif extension:
            out = {"state": "ended", "leg_id": p.get("DestUniqueid"), "extension": extension,
                   "outcome": DIAL_STATUS.get(status, "failed")}
        else:
            return []  # an outbound attempt that failed: the caller's Hangup ends the call
    elif name == "BridgeEnter":
        extension = None if caller_leg else _leg_extension(p, "", settings)
        out = {"state": "answered", "extension": extension,
               "leg_id": leg if extension else None}
    else:  # Hangup
        cause = p.get("Cause-txt") or p.get("Cause")
        if caller_leg:
            out = {"state": "ended", "hangup_cause": cause,
                   "outcome": "busy" if p.get("Cause") == "17" else None}
        else:
            out = {"state": "ended", "leg_id": leg,
                   "extension": _leg_extension(p, "", settings), "hangup_cause": cause}
    return [clean({**base, "event_id": event_key, **out})]


def _cdr(p, settings):
    unique = p.get("UniqueID") or p.get("Uniqueid")
    if not unique:
        raise ValidationFailed("Invalid input", {"fields": {"UniqueID": ["Missing data for required field."]}})
    call = p.get("Linkedid") or p.get("LinkedID") or unique
    duration, billable = p.get("Duration") or "", p.get("BillableSeconds") or ""
    primary = call == unique
    source, destination = p.get("Source"), p.get("Destination")
    out = {"event_id": f"asterisk:Cdr:{unique}", "provider": "asterisk", "call_id": call,
           # only the caller's CDR ends the call; an agent leg's CDR adds facts only
           "state": "ended" if primary else "update",
           "outcome": CDR_DISPOSITION.get((p.get("Disposition") or "").upper(), "failed")
           if primary else None,
           "duration_s": int(duration) if duration.isdigit() and primary else None,
           "talk_s": int(billable) if billable.isdigit() and primary else None,
           "from": source if primary else None, "to": destination if primary else None,
           "direction": _direction(source, destination, settings) if primary else None}
    return [clean(out)]
