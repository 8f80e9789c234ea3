"""Provider adapters and signatures as pure functions (the stack tests replay them end to
end); the signature vectors are computed the way each provider documents it."""
import base64
import hashlib
import hmac
from datetime import datetime, timezone

import pytest

from crm_common.errors import ValidationFailed
from crm_common.config import load_settings
from crm_common.timeutil import to_iso
from services.telephony.providers import asterisk, channel_extension, twilio, zadarma

SETTINGS = load_settings().telephony


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


def test_twilio_signatures_agree_with_twilios_own_validator():
    from twilio.request_validator import RequestValidator
    url = "https://crm.example.com/api/v1/telephony/twilio"
    params = {"CallSid": "CA1", "From": "+393470000000", "CallStatus": "ringing"}
    pairs = list(params.items())
    for algorithm in ("HMAC_SHA1", "HMAC_SHA256"):
        for signed in (url, "https://crm.example.com:443/api/v1/telephony/twilio"):
            header = RequestValidator("key").compute_signature(signed, params, algorithm)
            settings = None if algorithm == "HMAC_SHA1" else f"key=KS1,algorithm={algorithm}"
            # the SharedKey secret is used when the settings header is there, else the token
            assert twilio.valid_signature(url, pairs, "key" if settings is None else "tok", header,
                                          settings, "key")
            assert not twilio.valid_signature(url, pairs, "tok", header, settings, "other")
    header = RequestValidator("key").compute_signature(url, params, "HMAC_SHA256")
    assert not twilio.valid_signature(url, pairs, "key", header)  # SHA-256 needs its header
    assert not twilio.valid_signature(url, pairs, "tok", header, "key=KS1,algorithm=HMAC_MD5", "key")


def test_zadarma_signature_is_base64_of_hex_hmac_of_the_event_fields():
    params = {"event": "NOTIFY_START", "caller_id": "393470000000", "called_did": "390212345678",
              "call_start": "2026-11-20 10:00:00", "pbx_call_id": "in_1"}
    hex_digest = hmac.new(b"secret", b"3934700000003902123456782026-11-20 10:00:00",
                          hashlib.sha1).hexdigest()
    expected = base64.b64encode(hex_digest.encode()).decode()
    assert zadarma.signature(params, "secret") == expected
    assert zadarma.valid_signature(params, "secret", expected)
    # an event the call log does not use (NOTIFY_IVR, or one Zadarma adds) is signed like a
    # start: checked, then ignored by the gateway
    assert zadarma.valid_signature({**params, "event": "NOTIFY_IVR"}, "secret", expected)
    assert not zadarma.valid_signature({**params, "event": "NOTIFY_IVR"}, "other", expected)
    record = {"event": "NOTIFY_RECORD", "pbx_call_id": "in_1", "call_id_with_rec": "r1"}
    assert zadarma.signature(record, "s") == base64.b64encode(
        hmac.new(b"s", b"in_1r1", hashlib.sha1).hexdigest().encode()).decode()


def test_twilio_statuses_map_onto_canonical_states():
    base = {"CallSid": "CA1", "From": "+393470000000", "To": "+390212345678", "Direction": "inbound"}
    assert twilio.to_canonical({**base, "CallStatus": "ringing"}, SETTINGS)[0]["state"] == "ringing"
    # inbound: Twilio answering the parent (TwiML runs) is no human; its end has no outcome
    # of its own (answered only if a leg was)
    taken = twilio.to_canonical({**base, "CallStatus": "in-progress"}, SETTINGS)[0]
    assert taken["state"] == "update"
    done = twilio.to_canonical({**base, "CallStatus": "completed", "CallDuration": "42"}, SETTINGS)[0]
    assert (done["state"], done.get("outcome"), done["duration_s"]) == ("ended", None, 42)
    out = {**base, "Direction": "outbound-api"}
    assert twilio.to_canonical({**out, "CallStatus": "in-progress"}, SETTINGS)[0]["state"] == "answered"
    done = twilio.to_canonical({**out, "CallStatus": "completed", "CallDuration": "42"}, SETTINGS)[0]
    assert (done["state"], done["outcome"], done["talk_s"]) == ("ended", "answered", 42)
    leg = {**base, "CallSid": "CA2", "ParentCallSid": "CA1", "To": "client:alice",
           "Direction": "outbound-dial", "Timestamp": "Fri, 20 Nov 2026 10:01:40 +0000"}
    answered, ended = twilio.to_canonical({**leg, "CallStatus": "completed", "CallDuration": "40"},
                                          SETTINGS)
    assert (answered["state"], answered["leg_id"], answered["call_id"]) == ("answered", "CA2", "CA1")
    assert answered["occurred_at"].startswith("2026-11-20T10:01:00")
    assert (ended["state"], ended["outcome"], ended["talk_s"]) == ("ended", "answered", 40)
    dial = {**base, "CallStatus": "in-progress", "DialCallSid": "CA3"}
    [missed] = twilio.to_canonical({**dial, "DialCallStatus": "no-answer"}, SETTINGS)
    assert (missed["state"], missed["outcome"], missed["leg_id"]) == ("ended", "no_answer", "CA3")
    answered, ended = twilio.to_canonical({**dial, "DialCallStatus": "completed",
                                           "DialCallDuration": "12"}, SETTINGS)
    assert answered["state"] == "answered" and ended["talk_s"] == 12
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


# the ringing hot path and the users copy, with in-memory fakes counting database work
from services.telephony import store as telephony_store  # noqa: E402
from services.telephony.calls import Calls  # noqa: E402


class FakeCallStore:
    """Just what a call's first ringing event may touch; every other write fails the test."""

    def __init__(self, phones=None):
        self.calls, self.ops, self.phones = {}, [], phones or {}
        self.users = {"owner-1": {"_id": "owner-1", "name": "Owner", "extension": "201",
                                  "active": True}}

    def upsert_call(self, provider, call_id, base, likely_new=False):
        self.ops.append("upsert_call")
        for doc in self.calls.values():
            if (doc["provider"], doc["call_id"]) == (provider, call_id):
                return dict(doc), False
        self.calls[base["_id"]] = dict(base)
        return dict(base), True

    def event_seen(self, key):
        self.ops.append("event_seen")
        return False

    def remember_event(self, key, doc_id):
        self.ops.append("remember_event")

    def update_call(self, *args, **kwargs):
        raise AssertionError("the first ringing event of a known caller writes the record once")

    def user(self, user_id):
        return self.users.get(user_id)

    def contact_by_phone(self, e164):
        self.ops.append("contact_by_phone")  # telephony's copy of the contacts' numbers
        return self.phones.get(e164)

    def user_by_extension(self, extension):
        return None


class FakeContacts:
    def __init__(self, contact):
        self.contact, self.lookups = contact, 0

    def lookup(self, params):
        self.lookups += 1
        return {"items": [self.contact] if self.contact else []}


def test_first_ringing_of_a_known_caller_is_one_lookup_and_one_insert():
    store = FakeCallStore()
    contacts = FakeContacts({"id": "c1", "first_name": "Ada", "last_name": "Caller",
                             "owner_id": "owner-1"})
    calls = Calls(store, None, SETTINGS, contacts, "IT")
    event = {"event_id": "e1", "provider": "pbx", "call_id": "call-1", "direction": "inbound",
             "from": "+393471234567", "to": "+390212345678", "state": "ringing"}
    answer, events = calls.ingest(event)
    # a number telephony's copy does not know is asked of contacts
    assert store.ops == ["contact_by_phone", "upsert_call"] and contacts.lookups == 1
    assert answer["contact"] == {"id": "c1", "owner_id": "owner-1", "name": "Ada Caller"}
    assert answer["route_to"] == "201" and answer["duplicate"] is False
    assert [e["type"] for e in events] == ["call_started"]
    assert events[0]["data"]["contact_id"] == "c1"  # the event names the contact too
    doc = next(iter(store.calls.values()))
    assert doc["looked_up"] and doc["contact_id"] == "c1" and doc["first_event"] == "pbx:e1"

    # its repeat is known from the record itself: same answer, no second call_started
    store.ops.clear()
    again, events = calls.ingest(event)
    assert again["duplicate"] is True and events == []
    assert again["contact"]["id"] == "c1"
    assert store.ops == ["contact_by_phone", "upsert_call"]


def test_a_caller_in_telephonys_copy_needs_no_rpc():
    contact = {"id": "c1", "first_name": "Ada", "last_name": "Caller", "owner_id": "owner-1"}
    store = FakeCallStore({"+393471234567": {"_id": "c1", "phones": ["+393471234567"],
                                             "contact": contact}})
    contacts = FakeContacts(None)
    calls = Calls(store, None, SETTINGS, contacts, "IT")
    answer, _ = calls.ingest({"event_id": "e1", "provider": "pbx", "call_id": "call-2",
                              "direction": "inbound", "from": "+393471234567",
                              "to": "+390212345678", "state": "ringing"})
    assert contacts.lookups == 0 and store.ops == ["contact_by_phone", "upsert_call"]
    assert answer["contact"] == {"id": "c1", "owner_id": "owner-1", "name": "Ada Caller"}
    assert answer["route_to"] == "201"


class FakeUsers:
    def __init__(self, docs):
        self.docs, self.finds = {d["_id"]: dict(d) for d in docs}, 0

    def find(self, query):
        self.finds += 1
        docs = [dict(d) for d in self.docs.values()]

        class Cursor(list):
            def sort(self, key, direction):
                return Cursor(sorted(self, key=lambda d: d[key]))
        return Cursor(docs)

    def update_one(self, query, update, upsert=False):
        """Applied whatever the guard beside `_id` says (the guard: test_telephony.py)."""
        self.docs.setdefault(query["_id"], {"_id": query["_id"]}).update(update["$set"])
        return type("Result", (), {"matched_count": 1})()


def users_store(docs):
    users = FakeUsers(docs)
    db = {"calls": None, "call_events": None, "users": users, "counters": None,
          "contact_phones": None}
    return telephony_store.TelephonyStore(db, None), users


def test_users_copy_is_read_from_memory_and_a_local_change_shows_at_once():
    store, users = users_store([{"_id": "u1", "extension": "201", "name": "A", "active": True},
                                {"_id": "u2", "extension": "202", "name": "B", "active": False}])
    assert store.user("u1")["name"] == "A"
    assert store.user_by_extension("201")["_id"] == "u1"
    assert store.user_by_extension("202") is None  # inactive
    assert store.round_robin_users() == ["u1"]
    assert users.finds == 1  # one read served all four
    store.upsert_user({"_id": "u1", "extension": "209", "name": "A", "active": True},
                      datetime(2026, 12, 7, tzinfo=timezone.utc))
    assert store.user_by_extension("209")["_id"] == "u1" and store.user_by_extension("201") is None
    assert users.finds == 3  # the reload, and the miss on "201" asked the database once


def test_users_copy_changed_by_another_replica_shows_within_the_ttl(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(telephony_store.time, "monotonic", lambda: clock[0])
    store, users = users_store([{"_id": "u1", "extension": "201", "name": "A", "active": True}])
    assert store.user("u1")["extension"] == "201"
    users.docs["u1"]["extension"] = "301"  # written by another replica's handler
    clock[0] += telephony_store.USERS_CACHE_S / 2
    assert store.user("u1")["extension"] == "201"  # the bound: stale for at most the TTL
    clock[0] += telephony_store.USERS_CACHE_S
    assert store.user("u1")["extension"] == "301"


def test_a_call_is_dumped_as_its_schema_dumps_it():
    from datetime import datetime, timezone
    from marshmallow import fields
    from contracts.telephony import CallOut
    from services.telephony.calls import STATE_OF, dump_call
    at = datetime(2026, 11, 20, 9, 0, 1, 234000, tzinfo=timezone.utc)
    number = {"raw": "+393471234567", "e164": "+393471234567", "valid": True, "extension": False}
    docs = [
        {"_id": "c1", "provider": "pbx", "call_id": "x", "direction": "inbound", "from": number,
         "to": {"raw": "201", "e164": None, "valid": False, "extension": True},
         "number": number["e164"], "rank": 1, "state": "ringing", "legs": {}, "contact_id": None,
         "missed": False, "called_back": None, "lead_created": False, "started_at": at,
         "created_at": at, "updated_at": at, "first_event": "pbx:e1", "looked_up": True},
        {"_id": "c2", "provider": "pbx", "call_id": "y", "from": None, "talk_s": 12,
         "duration_s": 30, "ended_at": at, "answered_at": at, "outcome": "answered",
         "legs": {"201": {"leg_id": "201", "extension": "201", "agent_id": "u1", "rank": 3,
                          "started_at": at, "ended_at": at, "outcome": "answered"}},
         "originate": {"adapter": "ami", "status": "queued", "requested_at": at},
         "recording_state": "stored", "called_back_by": "c9"}]
    schema = CallOut()
    for doc in docs:
        legs = [{**leg, "state": STATE_OF[leg["rank"]]} for leg in doc["legs"].values()]
        expected = {**{f.data_key or n: [] if isinstance(f, fields.List) else None
                       for n, f in schema.fields.items()},
                    **schema.dump({**doc, "legs": legs}), "id": doc["_id"]}
        if doc.get("originate"):
            expected["originate"] = {k: to_iso(v) for k, v in doc["originate"].items()}
        assert dump_call(doc) == expected


def test_only_facts_that_change_the_record_are_written():
    from datetime import datetime, timedelta, timezone
    from services.telephony.calls import changes_anything
    at = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
    doc = {"started_at": at, "from": {"e164": "+393471234567"},
           "legs": {"a": {"leg_id": "a", "rank": 2, "started_at": at, "answered_at": at}}}

    def facts(sets=None, mins=None, maxs=None):
        return {"sets": {"updated_at": at + timedelta(hours=1), **(sets or {})},
                "mins": {"started_at": at, **(mins or {})}, "maxs": maxs or {}}
    # an agent leg's BridgeEnter after its DialEnd: nothing new
    assert not changes_anything(doc, facts({"legs.a.leg_id": "a"},
                                           {"legs.a.started_at": at + timedelta(seconds=3),
                                            "legs.a.answered_at": at + timedelta(seconds=3)},
                                           {"legs.a.rank": 2}))
    assert changes_anything(doc, facts(maxs={"legs.a.rank": 3}))             # the leg hung up
    assert changes_anything(doc, facts({"legs.b.leg_id": "b"}))              # another agent rung
    assert changes_anything(doc, facts(mins={"started_at": at - timedelta(seconds=1)}))
    assert changes_anything(doc, facts(mins={"answered_at": at}))            # not answered yet
    assert changes_anything(doc, facts({"talk_s": 60}))
    assert not changes_anything(doc, facts({"from": {"e164": "+393471234567"}}))
