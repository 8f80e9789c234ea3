"""Provider adapters and signatures as pure functions (the stack tests replay them end to
end); the signature vectors are computed the way each provider documents it."""
import base64
import hashlib
import hmac

import pytest

from crm_common.errors import ValidationFailed
from services.telephony.config import load_telephony_settings
from services.telephony.providers import asterisk, channel_extension, twilio, zadarma

SETTINGS = load_telephony_settings()


def test_twilio_signature_is_hmac_sha1_of_url_and_sorted_params():
    url = "https://crm.example.com/api/v1/telephony/twilio?x=1"
    pairs = [("To", "+390212345678"), ("CallSid", "CA1"), ("From", "+393470000000")]
    data = url + "CallSidCA1From+393470000000To+390212345678"
    expected = base64.b64encode(hmac.new(b"token", data.encode(), hashlib.sha1).digest()).decode()
    assert twilio.signature(url, pairs, "token") == expected
    assert twilio.valid_signature(url, pairs, "token", expected)
    assert not twilio.valid_signature(url, pairs, "other", expected)
    assert not twilio.valid_signature(url, pairs, "", expected)  # no token configured: refuse
    assert not twilio.valid_signature(url, pairs, "token", None)


def test_zadarma_signature_is_base64_of_hex_hmac_of_the_event_fields():
    params = {"event": "NOTIFY_START", "caller_id": "393470000000", "called_did": "390212345678",
              "call_start": "2026-11-20 10:00:00", "pbx_call_id": "in_1"}
    hex_digest = hmac.new(b"secret", b"3934700000003902123456782026-11-20 10:00:00",
                          hashlib.sha1).hexdigest()
    expected = base64.b64encode(hex_digest.encode()).decode()
    assert zadarma.signature(params, "secret") == expected
    assert zadarma.valid_signature(params, "secret", expected)
    assert not zadarma.valid_signature({**params, "event": "NOTIFY_WHATEVER"}, "secret", expected)
    record = {"event": "NOTIFY_RECORD", "pbx_call_id": "in_1", "call_id_with_rec": "r1"}
    assert zadarma.signature(record, "s") == base64.b64encode(
        hmac.new(b"s", b"in_1r1", hashlib.sha1).hexdigest().encode()).decode()


def test_twilio_statuses_map_onto_canonical_states():
    base = {"CallSid": "CA1", "From": "+393470000000", "To": "+390212345678", "Direction": "inbound"}
    assert twilio.to_canonical({**base, "CallStatus": "ringing"}, SETTINGS)[0]["state"] == "ringing"
    answered = twilio.to_canonical({**base, "CallStatus": "in-progress"}, SETTINGS)[0]
    assert answered["state"] == "answered"
    done = twilio.to_canonical({**base, "CallStatus": "completed", "CallDuration": "42"}, SETTINGS)[0]
    assert (done["state"], done["outcome"], done["talk_s"]) == ("ended", "answered", 42)
    busy = twilio.to_canonical({**base, "CallStatus": "busy", "Direction": "outbound-api"}, SETTINGS)[0]
    assert (busy["outcome"], busy["direction"]) == ("busy", "outbound")
    child = twilio.to_canonical({**base, "CallSid": "CA2", "ParentCallSid": "CA1", "To": "client:alice",
                                 "CallStatus": "no-answer", "Direction": "outbound-dial"}, SETTINGS)[0]
    assert (child["call_id"], child["leg_id"], child["extension"]) == ("CA1", "CA2", "alice")
    assert "direction" not in child
    with pytest.raises(ValidationFailed):
        twilio.to_canonical({**base, "CallStatus": "exploded"}, SETTINGS)
    with pytest.raises(ValidationFailed):
        twilio.to_canonical({"CallStatus": "ringing"}, SETTINGS)


def test_zadarma_events_and_routing_reply():
    start = {"event": "NOTIFY_START", "pbx_call_id": "in_1", "caller_id": "393470000000",
             "called_did": "390212345678", "call_start": "2026-11-20 10:00:00"}
    event = zadarma.to_canonical(start, SETTINGS)[0]
    assert (event["from"], event["to"], event["occurred_at"]) == (
        "+393470000000", "+390212345678", "2026-11-20T10:00:00")
    end = zadarma.to_canonical({**start, "event": "NOTIFY_END", "disposition": "no answer",
                                "duration": "0", "internal": "101"}, SETTINGS)[0]
    assert (end["state"], end["outcome"], end["extension"]) == ("ended", "no_answer", "101")
    assert "leg_id" not in end  # the call's end, not one leg's
    answer = {"route_to": "101", "contact": {"id": "c1", "name": "Ada Lovelace"}}
    assert zadarma.reply(answer, start) == {"redirect": "101", "caller_name": "Ada Lovelace"}
    assert zadarma.reply(answer, {**start, "event": "NOTIFY_END"}) == {}


def test_asterisk_legs_and_the_callers_hangup():
    caller_hangup = {"Event": "Hangup", "Uniqueid": "1.1", "Linkedid": "1.1", "Cause": "16",
                     "Cause-txt": "Normal Clearing"}
    assert asterisk.to_canonical(caller_hangup, SETTINGS)[0]["state"] == "ended"
    assert "leg_id" not in asterisk.to_canonical(caller_hangup, SETTINGS)[0]
    leg_hangup = {**caller_hangup, "Uniqueid": "1.2", "Channel": "PJSIP/101-00000002"}
    leg = asterisk.to_canonical(leg_hangup, SETTINGS)[0]
    assert (leg["leg_id"], leg["extension"]) == ("1.2", "101")
    no_answer = {"Event": "DialEnd", "Uniqueid": "1.1", "Linkedid": "1.1", "DestUniqueid": "1.3",
                 "DestChannel": "PJSIP/102-00000003", "DestCallerIDNum": "102", "DialStatus": "NOANSWER"}
    assert asterisk.to_canonical(no_answer, SETTINGS)[0]["outcome"] == "no_answer"
    assert asterisk.to_canonical({"Event": "RTCPSent"}, SETTINGS) == []
    out = asterisk.to_canonical({"Event": "Newchannel", "Uniqueid": "2.1", "Linkedid": "2.1",
                                 "CallerIDNum": "101", "Exten": "+393470000000"}, SETTINGS)[0]
    assert (out["direction"], out["extension"]) == ("outbound", "101")
    # repeats of one AMI event map to one event id
    assert asterisk.to_canonical(no_answer, SETTINGS)[0]["event_id"] == \
        asterisk.to_canonical(dict(no_answer), SETTINGS)[0]["event_id"]


def test_channel_extension():
    assert channel_extension("PJSIP/101-00000002") == "101"
    assert channel_extension("SIP/2002-0a1b2c3d") == "2002"
    assert channel_extension("Local/101@from-queue-00000001;2") == "101"
    assert channel_extension("garbage") is None
