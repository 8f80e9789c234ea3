"""The telephony service alone: a canonical ringing / answered / ended sequence onto one
call record, the routing answer, the events it announces; the contacts service's lookup and
lead creation stood in for (replace_dependencies)."""
import json
import os
import random

import pytest
from nameko.testing.services import entrypoint_waiter

from tests.services.support import call

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "telephony")


@pytest.fixture
def telephony(start_service):
    from services.telephony.service import TelephonyService
    container, mocks = start_service(TelephonyService, "contacts_rpc")
    container.contacts_rpc = mocks["contacts_rpc"]
    return container


def canonical(scenario, **values):
    """A sequence of tests/fixtures/telephony/canonical.json, its ${...} filled in."""
    text = json.dumps(json.load(open(os.path.join(FIXTURES, "canonical.json")))[scenario])
    for key, value in values.items():
        text = text.replace("${" + key + "}", str(value))
    assert "${" not in text, text
    return json.loads(text)


def sequence_values(unique, **extra):
    return {"call": f"{unique}-{random.randint(0, 10**6)}",
            "caller": "+39347" + "".join(random.choice("0123456789") for _ in range(7)),
            "did": "+390299990000", "ext1": "201", "ext2": "202", "ext3": "203", **extra}


def add_user(container, publish, user_id, extension):
    with entrypoint_waiter(container, "on_user_upserted"):
        publish("gateway", "user_upserted", {"user": {
            "id": user_id, "email": None, "name": user_id.title(), "role": "agent",
            "active": True, "extension": extension}})


def ingest_all(container, events):
    return [call(container, "ingest", event) for event in events]


def of_call(recorder, doc_id):
    return [e["type"] for e in recorder.events if e["data"]["call"]["id"] == doc_id]


def test_an_answered_call_is_routed_logged_and_announced(telephony, publish, record_events, unique):
    owner, agent = f"owner{unique}", f"agent{unique}"
    add_user(telephony, publish, owner, "7" + unique[:4].translate(str.maketrans("abcdef", "123456")))
    add_user(telephony, publish, agent, "201")
    v = sequence_values(unique)
    contact = {"id": f"c-{unique}", "first_name": "Ada", "last_name": "Caller", "owner_id": owner}
    telephony.contacts_rpc.lookup.return_value = {"items": [contact]}
    events = record_events("telephony")

    answers = ingest_all(telephony, canonical("inbound_answered", **v))
    first = answers[0]
    assert first["contact"] == {"id": contact["id"], "owner_id": owner, "name": "Ada Caller"}
    assert first["owner"]["id"] == owner and first["route_to"] == first["owner"]["extension"]
    telephony.contacts_rpc.lookup.assert_called_once_with({"phone": v["caller"]})
    assert not telephony.contacts_rpc.create_contact.called  # a known caller: no lead

    doc_id = first["call"]["id"]
    assert {a["call"]["id"] for a in answers} == {doc_id}  # one record for the whole call
    logged = call(telephony, "get_call", doc_id)
    assert logged["state"] == "ended" and logged["outcome"] == "answered"
    assert logged["missed"] is False and logged["talk_s"] == 120
    assert logged["agent_id"] == agent and logged["contact_id"] == contact["id"]
    assert logged["from"]["e164"] == v["caller"] and logged["direction"] == "inbound"

    # a repeated event is answered as a duplicate and changes nothing
    again = call(telephony, "ingest", canonical("inbound_answered", **v)[-1])
    assert again["duplicate"] is True

    # each transition announced once, in order (call_missed only for a missed call: the
    # record above is not one)
    assert events.wait_for(lambda e: e["type"] == "call_ended" and e["data"]["call"]["id"] == doc_id)
    # the agent's leg ringing is a fact of a live call: it rides on call_answered, no
    # call_updated of its own (each event costs every reader of the bus)
    assert of_call(events, doc_id) == ["call_started", "call_answered", "call_ended"]
    ended = next(e for e in events.events if e["type"] == "call_ended")["data"]
    assert ended["contact_id"] == contact["id"] and ended["owner_id"] == owner
    assert ended["contacted_at"] and ended["summary"].startswith("Call ended with Ada Caller")


def test_a_missed_call_from_an_unknown_number_becomes_a_lead(telephony, record_events, unique):
    v = sequence_values(unique)
    lead = {"id": f"lead-{unique}", "first_name": None, "last_name": None, "owner_id": None}
    telephony.contacts_rpc.lookup.return_value = {"items": []}
    telephony.contacts_rpc.create_contact.return_value = lead
    events = record_events("telephony")

    answers = ingest_all(telephony, canonical("queue_missed", **v))
    doc_id = answers[0]["call"]["id"]
    [(payload, force), _] = telephony.contacts_rpc.create_contact.call_args
    assert payload["phones"] == [{"number": v["caller"], "type": "other"}]
    assert payload["source"] == "phone" and force is False
    logged = call(telephony, "get_call", doc_id)
    assert logged["missed"] is True and logged["called_back"] is False
    assert logged["contact_id"] == lead["id"] and logged["lead_created"] is True

    missed = events.wait_for(lambda e: e["type"] == "call_missed" and e["data"]["call"]["id"] == doc_id)
    assert missed and missed[0]["data"]["contact_id"] == lead["id"]
    assert missed[0]["data"]["from"] == v["caller"]
    # three agents rung and hung up: six leg events, none announced on its own; the
    # call's last event carries every leg
    assert of_call(events, doc_id) == ["call_started", "call_ended", "call_missed"]
    assert sorted(missed[0]["data"]["agent_ids"]) == sorted(
        {leg["agent_id"] for leg in logged["legs"] if leg.get("agent_id")})
    assert len(missed[0]["data"]["call"]["legs"]) == 3
