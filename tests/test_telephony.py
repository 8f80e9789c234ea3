"""Telephony through the real stack: recorded event sequences of each provider replayed
through the gateway (tests/fixtures/telephony/), the call log, caller lookup and routing,
lead creation, events, reports and the click-to-call dialogues."""
import base64
import hashlib
import hmac
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from crm_common.messaging.publish import publish_event
from tests.ami_server import AmiServer
from tests.stack import free_port

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "telephony")
TWILIO_TOKEN = "test-twilio-auth-token"
ZADARMA_SECRET = "test-zadarma-secret"
COMPANY_DID = "+390212345678"
# kept in the environment: a module importing this one's helpers imports it a second time
# (tests/ is no package), and both must name the port the stack was started with
AMI_PORT = int(os.environ.setdefault("CRM_TEST_AMI_PORT", str(free_port())))
AMI_SECRET = "s3cret"

# The services and the gateway copy os.environ when the session's stack starts, which is
# after every test module is imported: this is how telephony's configuration reaches them.
os.environ.update({
    "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "ZADARMA_API_SECRET": ZADARMA_SECRET,
    "TELEPHONY_OWN_NUMBERS": COMPANY_DID, "TELEPHONY_CREATE_LEADS": "true",
    "TELEPHONY_LEAD_OWNER": "round_robin", "TELEPHONY_ORIGINATE": "ami",
    "TELEPHONY_AMI_HOST": "127.0.0.1", "TELEPHONY_AMI_PORT": str(AMI_PORT),
    "TELEPHONY_AMI_USERNAME": "crm", "TELEPHONY_AMI_SECRET": AMI_SECRET,
    "TELEPHONY_AMI_TIMEOUT_S": "5", "TELEPHONY_CALLER_ID": COMPANY_DID,
    "TELEPHONY_CONTACTS_SYNC_S": "1",
})


# helpers
def mobile():
    return "+39347" + "".join(random.choice("0123456789") for _ in range(7))


def extension():
    return str(random.randint(10000, 99999))


def fixture(provider, scenario, **values):
    text = json.dumps(json.load(open(os.path.join(FIXTURES, f"{provider}.json")))[scenario])
    for key, value in values.items():
        text = text.replace("${" + key + "}", str(value))
    assert "${" not in text, text
    return json.loads(text)


def values(unique, **extra):
    caller = extra.pop("caller", None) or mobile()
    return {"call": f"{unique}{random.randint(0, 10**6)}", "caller": caller,
            "ext1": extension(), "ext2": extension(), "ext3": extension(),
            "caller_digits": caller.lstrip("+"), "did": COMPANY_DID,
            "did_digits": COMPANY_DID.lstrip("+"), **extra}


@pytest.fixture(scope="module")
def key_headers(api):
    """An API key with telephony:write once the gateway has keys (auth issue); until
    then every caller is let in and no header is needed."""
    created = api.post("/api-keys", json={"name": "telephony tests", "scopes": ["telephony:write"]})
    if created.status_code in (200, 201):
        body = created.json()
        key = body.get("key") or body.get("api_key") or body.get("secret")
        if key:
            return {"X-API-Key": key}
    return {}


def twilio_sign(url, form):
    data = url + "".join(k + v for k, v in sorted(form.items()))
    return base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def zadarma_sign(form):
    fields = {"NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
              "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
              "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
              "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec")}.get(
        form["event"], ("caller_id", "called_did", "call_start"))
    data = "".join(form.get(f, "") for f in fields)
    return base64.b64encode(hmac.new(ZADARMA_SECRET.encode(), data.encode(), hashlib.sha1)
                            .hexdigest().encode()).decode()


def send(api, provider, event, headers):
    if provider == "twilio":
        url = api.url("/telephony/twilio")
        return api.post("/telephony/twilio", data=event,
                        headers={"X-Twilio-Signature": twilio_sign(url, event)})
    if provider == "zadarma":
        return api.post("/telephony/zadarma", data=event, headers={"Signature": zadarma_sign(event)})
    path = "/telephony/asterisk" if provider == "asterisk" else "/telephony/events"
    return api.post(path, json=event, headers=headers)


def replay(api, provider, events, headers):
    answers = []
    for event in events:
        response = send(api, provider, event, headers)
        assert response.status_code == 200, (event, response.text)
        answers.append(response.json())
    return answers


def add_user(stack, user_id=None, ext=None, name="Agent"):
    user = {"id": user_id or f"u{random.randint(0, 10**9)}", "email": None, "name": name,
            "role": "agent", "active": True, "extension": ext or extension()}
    stack.add_user(user["id"], name=name)  # writes may name them (gateway/user_refs.py)
    publish_event(stack.amqp_uri, "gateway", "user_upserted", {"user": user})
    deadline = time.time() + 10
    while time.time() < deadline:
        if stack.db("telephony").users.find_one({"_id": user["id"], "extension": user["extension"]}):
            return user
        time.sleep(0.05)
    raise AssertionError("user_upserted was not consumed")


def make_contact(api, phone, owner_id, first_name="Ada"):
    response = api.post("/contacts", json={"first_name": first_name, "last_name": "Caller",
                                           "phones": [phone], "owner_id": owner_id})
    assert response.status_code == 201, response.text
    return response.json()


def call_record(stack, provider, call_id):
    docs = list(stack.db("telephony").calls.find({"provider": provider, "call_id": call_id}))
    assert len(docs) == 1, docs
    return docs[0]


def get_call(api, doc_id):
    response = api.get(f"/calls/{doc_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    return predicate()


def of_call(events, doc_id, kind):
    return [e for e in events if e["type"] == kind and e["data"]["call"]["id"] == doc_id]


# inbound answered: lookup, routing answer, call log, events, contact timeline
@pytest.mark.parametrize("provider", ["canonical", "twilio", "zadarma", "asterisk"])
def test_inbound_answered_call_is_routed_logged_and_on_the_timeline(
        stack, api, key_headers, record_events, unique, provider):
    owner, agent = add_user(stack, name="Owner"), add_user(stack, name="Agent")
    v = values(unique, ext1=agent["extension"])
    contact = make_contact(api, v["caller"], owner["id"])
    recorder = record_events("telephony")
    answers = replay(api, provider, fixture(provider, "inbound_answered", **v), key_headers)

    first = answers[0]
    if provider == "zadarma":  # Zadarma's own routing answer to NOTIFY_START
        assert first == {"redirect": owner["extension"], "caller_name": "Ada Caller"}
    else:
        assert first["contact"]["id"] == contact["id"]
        assert first["route_to"] == owner["extension"]
        if provider == "canonical":
            assert first["owner"] == {"id": owner["id"], "name": "Owner",
                                      "extension": owner["extension"]}

    call_id = {"zadarma": f"in_{v['call']}", "asterisk": f"{v['call']}.1"}.get(provider, v["call"])
    doc = call_record(stack, "pbx1" if provider == "canonical" else provider, call_id)
    call = get_call(api, doc["_id"])
    assert call["state"] == "ended" and call["outcome"] == "answered"
    assert call["direction"] == "inbound" and call["missed"] is False
    assert call["from"]["e164"] == v["caller"] and call["number"] == v["caller"]
    assert call["contact_id"] == contact["id"] and call["owner_id"] == owner["id"]
    if provider != "twilio":
        assert call["agent_id"] == agent["id"] and call["extension"] == agent["extension"]
        assert [leg["extension"] for leg in call["legs"]] == [agent["extension"]]
    assert call["started_at"] and call["answered_at"] and call["ended_at"]
    expected_talk = {"canonical": 120, "twilio": 94, "zadarma": 125, "asterisk": 115}[provider]
    assert call["talk_s"] == expected_talk
    if provider == "canonical":
        assert call["recording_url"].endswith(".wav") and call["hangup_cause"] == "Normal Clearing"
        assert call["duration_s"] == 125
    if provider == "zadarma":
        assert call["recording_id"] == f"1700000000.{v['call']}"

    events = recorder.wait_for(lambda e: e["type"] == "call_ended"
                               and e["data"]["call"]["id"] == doc["_id"])
    recorder.drain(0.5)
    for kind in ("call_started", "call_answered", "call_ended"):
        assert len(of_call(recorder.events, doc["_id"], kind)) == 1, kind
    assert not of_call(recorder.events, doc["_id"], "call_missed")
    ended = events[0]["data"]
    assert ended["contact_id"] == contact["id"] and ended["contacted_at"]
    assert ended["owner_id"] == owner["id"] and ended["summary"].startswith("Call ended with Ada Caller")

    timeline = wait(lambda: {e["kind"] for e in api.get(f"/contacts/{contact['id']}/timeline").json()["items"]}
                    >= {"call_answered", "call_ended"})
    assert timeline
    assert wait(lambda: api.get(f"/contacts/{contact['id']}").json()["last_contacted_at"])


# a queue ringing several agents: one call, one missed call
@pytest.mark.parametrize("provider", ["canonical", "zadarma", "asterisk"])
def test_queue_ringing_several_agents_is_one_missed_call(
        stack, api, key_headers, record_events, unique, provider):
    owner = add_user(stack, name="Owner")
    agents = [add_user(stack, name=f"Agent {i}") for i in range(3)]
    v = values(unique, **{f"ext{i + 1}": a["extension"] for i, a in enumerate(agents)})
    contact = make_contact(api, v["caller"], owner["id"])
    recorder = record_events("telephony")
    replay(api, provider, fixture(provider, "queue_missed", **v), key_headers)

    call_id = {"zadarma": f"in_{v['call']}", "asterisk": f"{v['call']}.1"}.get(provider, v["call"])
    doc = call_record(stack, "pbx1" if provider == "canonical" else provider, call_id)
    call = get_call(api, doc["_id"])
    assert call["state"] == "ended" and call["outcome"] != "answered"
    assert call["missed"] is True and call["called_back"] is False
    assert sorted(leg["extension"] for leg in call["legs"]) == sorted(a["extension"] for a in agents)
    assert call["agent_id"] == agents[0]["id"]

    recorder.wait_for(lambda e: e["type"] == "call_missed" and e["data"]["call"]["id"] == doc["_id"])
    recorder.drain(1.0)
    missed = of_call(recorder.events, doc["_id"], "call_missed")
    assert len(missed) == 1
    data = missed[0]["data"]
    assert data["contact_id"] == contact["id"] and data["owner_id"] == owner["id"]
    assert data["agent_id"] == agents[0]["id"] and data["from"] == v["caller"]
    assert len(of_call(recorder.events, doc["_id"], "call_ended")) == 1
    assert not of_call(recorder.events, doc["_id"], "call_answered")
    assert "contacted_at" not in data


@pytest.mark.parametrize("provider", ["canonical", "twilio", "zadarma", "asterisk"])
def test_outbound_call_is_logged_against_the_callee(stack, api, key_headers, record_events,
                                                    unique, provider):
    owner, agent = add_user(stack, name="Owner"), add_user(stack, name="Agent")
    v = values(unique, ext1=agent["extension"])
    contact = make_contact(api, v["caller"], owner["id"])
    recorder = record_events("telephony")
    replay(api, provider, fixture(provider, "outbound", **v), key_headers)
    call_id = {"zadarma": f"out_{v['call']}", "asterisk": f"{v['call']}.1"}.get(provider, v["call"])
    doc = call_record(stack, "pbx1" if provider == "canonical" else provider, call_id)
    call = get_call(api, doc["_id"])
    assert call["direction"] == "outbound" and call["state"] == "ended"
    assert call["outcome"] == "answered" and call["missed"] is False
    assert call["number"] == v["caller"] and call["contact_id"] == contact["id"]
    if provider != "twilio":
        assert call["agent_id"] == agent["id"]
    recorder.wait_for(lambda e: e["type"] == "call_ended" and e["data"]["call"]["id"] == doc["_id"])
    assert not of_call(recorder.drain(0.3), doc["_id"], "call_missed")
    # an outbound call to a stranger is not a lead
    assert api.get("/contacts/lookup", params={"phone": v["caller"]}).json()["items"][0]["id"] == contact["id"]


@pytest.mark.parametrize("provider", ["canonical", "twilio"])
def test_duplicates_and_reordering_change_nothing(stack, api, key_headers, record_events,
                                                  unique, provider):
    agent = add_user(stack)
    v = values(unique, ext1=agent["extension"])
    make_contact(api, v["caller"], agent["id"])
    recorder = record_events("telephony")
    answers = replay(api, provider, fixture(provider, "duplicates_reordered", **v), key_headers)
    doc = call_record(stack, "pbx1" if provider == "canonical" else provider, v["call"])
    call = get_call(api, doc["_id"])
    assert call["state"] == "ended" and call["outcome"] == "answered"  # late ringing: no downgrade
    assert call["answered_at"] and call["missed"] is False
    if provider == "canonical":
        assert [a["duplicate"] for a in answers] == [False, False, False, True, True, False]
        assert call["started_at"] == "2026-11-20T13:00:00Z"
    recorder.wait_for(lambda e: e["type"] == "call_ended" and e["data"]["call"]["id"] == doc["_id"])
    recorder.drain(1.0)
    for kind in ("call_started", "call_ended"):
        assert len(of_call(recorder.events, doc["_id"], kind)) == 1, kind
    assert not of_call(recorder.events, doc["_id"], "call_missed")


def test_a_flood_of_events_for_one_call_keeps_one_record(stack, api, key_headers, record_events,
                                                         unique):
    v = values(unique)
    recorder = record_events("telephony")
    events = [{"event_id": f"{v['call']}-{i}", "provider": "flood", "call_id": v["call"],
               "direction": "inbound", "from": COMPANY_DID, "to": "101",
               "state": ("ringing", "answered", "ended")[i % 3], "outcome": "answered"}
              for i in range(60)]
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda e: send(api, "canonical", e, key_headers).status_code, events * 2))
    assert set(statuses) == {200}
    doc = call_record(stack, "flood", v["call"])
    assert doc["state"] == "ended" and doc["outcome"] == "answered"
    recorder.wait_for(lambda e: e["type"] == "call_ended" and e["data"]["call"]["id"] == doc["_id"])
    recorder.drain(1.0)
    for kind in ("call_started", "call_ended"):
        assert len(of_call(recorder.events, doc["_id"], kind)) == 1, kind
    # an "ended" may have won before any "answered" arrived: then none is announced
    assert len(of_call(recorder.events, doc["_id"], "call_answered")) <= 1
    # the company's own number is never looked up nor turned into a lead
    assert doc["contact_id"] is None and not doc.get("lead_claimed")


# the ringing answer does not wait for the broker: events are stored, then published
def test_ringing_events_go_out_after_the_answer_and_leave_the_outbox(
        stack, api, key_headers, record_events, unique):
    owner = add_user(stack, name="Owner")
    v = values(unique)
    contact = make_contact(api, v["caller"], owner["id"])
    recorder = record_events("telephony")
    event = {"event_id": f"{v['call']}-r", "provider": "pbx1", "call_id": v["call"],
             "direction": "inbound", "from": v["caller"], "to": COMPANY_DID, "state": "ringing"}
    answer = send(api, "canonical", event, key_headers).json()
    assert answer["contact"]["id"] == contact["id"] and answer["route_to"] == owner["extension"]
    doc_id = answer["call"]["id"]
    found = recorder.wait_for(lambda e: e["type"] == "call_started"
                              and e["data"]["call"]["id"] == doc_id)
    assert found[0]["data"]["contact_id"] == contact["id"]
    outbox = stack.db("telephony")["outbox"]
    assert wait(lambda: outbox.count_documents({"_id": f"{doc_id}:call_started"}) == 0, timeout=5)
    # the repeat is answered the same, announced nothing
    again = send(api, "canonical", event, key_headers).json()
    assert again["duplicate"] is True and again["contact"]["id"] == contact["id"]
    recorder.drain(1.0)
    assert len(of_call(recorder.events, doc_id, "call_started")) == 1


@pytest.fixture
def telephony_with_cuttable_events(stack):
    """telephony replica 1 publishes its events through a proxy the test can cut; replica 0
    is stopped meanwhile so every RPC goes to replica 1."""
    from urllib.parse import urlparse
    from tests.faults import CuttableProxy
    broker = urlparse(stack.amqp_uri)
    proxy = CuttableProxy(broker.hostname, broker.port or 5672)
    events_uri = broker._replace(
        netloc=f"{broker.username}:{broker.password}@127.0.0.1:{proxy.port}").geturl()
    stack.stop_service("telephony", 0)
    stack.start_service("telephony", 1, CRM_EVENTS_AMQP_URI=events_uri,
                        CRM_OUTBOX_RELAY_SECONDS="0.5")
    stack.wait_service("telephony")
    yield proxy
    stack.stop_service("telephony", 1)
    proxy.close()
    stack.start_service("telephony", 0)
    stack.wait_service("telephony")


def test_ringing_answered_while_the_broker_is_cut_still_announces_the_call(
        stack, api, key_headers, record_events, unique, telephony_with_cuttable_events):
    proxy = telephony_with_cuttable_events
    owner = add_user(stack, name="Owner")
    v = values(unique)
    contact = make_contact(api, v["caller"], owner["id"])
    recorder = record_events("telephony", "call_started")
    proxy.cut()
    event = {"event_id": f"{v['call']}-r", "provider": "pbx1", "call_id": v["call"],
             "direction": "inbound", "from": v["caller"], "to": COMPANY_DID, "state": "ringing"}
    answer = send(api, "canonical", event, key_headers)
    assert answer.status_code == 200, answer.text  # the PBX gets its routing answer
    assert answer.json()["contact"]["id"] == contact["id"]
    doc_id = answer.json()["call"]["id"]
    outbox = stack.db("telephony")["outbox"]
    assert outbox.count_documents({"_id": f"{doc_id}:call_started"}) == 1  # stored before the answer
    assert not recorder.wait_for(lambda e: e["data"]["call"]["id"] == doc_id, timeout=2)

    proxy.restore()
    found = recorder.wait_for(lambda e: e["data"]["call"]["id"] == doc_id, timeout=20)
    assert len(found) == 1 and found[0]["data"]["contact_id"] == contact["id"]
    assert wait(lambda: outbox.count_documents({"_id": f"{doc_id}:call_started"}) == 0, timeout=10)


# unknown callers
def test_unknown_caller_becomes_a_phone_lead_owned_round_robin(stack, api, key_headers, unique):
    add_user(stack), add_user(stack)
    active = {u["_id"] for u in stack.db("telephony").users.find({"active": {"$ne": False},
                                                                 "extension": {"$nin": [None, ""]}})}
    owners = []
    for _ in range(2):
        v = values(unique)
        answer = send(api, "canonical", fixture("canonical", "queue_missed", **v)[0], key_headers).json()
        lead = api.get(f"/contacts/{answer['contact']['id']}").json()
        assert lead["source"] == "phone" and lead["status"] == "lead"
        assert [p["e164"] for p in lead["phones"]] == [v["caller"]]
        assert lead["owner_id"] in active and answer["call"]["lead_created"] is True
        owners.append(lead["owner_id"])
        # the same caller again: found, not created twice
        again = values(unique, caller=v["caller"])
        second = send(api, "canonical", fixture("canonical", "queue_missed", **again)[0], key_headers).json()
        assert second["contact"]["id"] == lead["id"] and second["call"]["lead_created"] is False
    assert owners[0] != owners[1]  # the rotation moved on


def test_unparseable_number_is_kept_raw_and_flagged(stack, api, key_headers, unique):
    event = {"event_id": f"bad-{unique}", "provider": "pbx1", "call_id": f"bad-{unique}",
             "direction": "inbound", "from": "anonymous", "to": COMPANY_DID, "state": "ringing"}
    response = send(api, "canonical", event, key_headers)
    assert response.status_code == 200, response.text
    call = response.json()["call"]
    assert call["from"] == {"raw": "anonymous", "e164": None, "valid": False, "extension": False}
    assert call["contact_id"] is None and call["number"] is None


# bad input
def test_bad_input_is_refused_and_nothing_is_stored(stack, api, key_headers, unique):
    calls = stack.db("telephony").calls
    v = values(unique)
    form = fixture("twilio", "inbound_missed", **v)[0]
    url = api.url("/telephony/twilio")
    assert api.post("/telephony/twilio", data=form).status_code == 403
    wrong = api.post("/telephony/twilio", data=form, headers={"X-Twilio-Signature": twilio_sign(url + "x", form)})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    tampered = dict(form, From="+15550001111")
    assert api.post("/telephony/twilio", data=tampered,
                    headers={"X-Twilio-Signature": twilio_sign(url, form)}).status_code == 403
    zform = fixture("zadarma", "queue_missed", **v)[0]
    assert api.post("/telephony/zadarma", data=zform, headers={"Signature": "bm9wZQ=="}).status_code == 403
    assert api.post("/telephony/zadarma", data=zform).status_code == 403
    assert calls.count_documents({"call_id": {"$in": [v["call"], f"in_{v['call']}"]}}) == 0

    # signed but missing what is required: 422, unknown fields ignored
    no_sid = {k: x for k, x in form.items() if k != "CallSid"}
    response = send(api, "twilio", no_sid, key_headers)
    assert response.status_code == 422 and "CallSid" in response.json()["error"]["details"]["fields"]
    bad = {"event_id": "x", "provider": "pbx1", "call_id": f"c{unique}", "from": "+39347",
           "unknown_field": 1}
    response = send(api, "canonical", bad, key_headers)
    assert response.status_code == 422 and "state" in response.json()["error"]["details"]["fields"]
    response = send(api, "asterisk", {"Event": "Hangup", "Uniqueid": "1.1"}, key_headers)
    assert response.status_code == 422 and "Linkedid" in response.json()["error"]["details"]["fields"]
    assert calls.count_documents({"call_id": f"c{unique}"}) == 0
    # an AMI event the call log does not need is accepted and ignored
    ignored = send(api, "asterisk", {"Event": "PeerStatus", "Peer": "PJSIP/101"}, key_headers)
    assert ignored.status_code == 200 and ignored.json()["ignored"] is True


def test_zadarma_echo_and_unknown_caller_answer(stack, api, unique):
    response = api.get("/telephony/zadarma", params={"zd_echo": f"echo{unique}"})
    assert response.status_code == 200 and response.text == f"echo{unique}"
    # an unknown caller becomes a lead owned round robin: routed to that owner, no name yet
    add_user(stack)
    start = fixture("zadarma", "queue_missed", **values(unique))[0]
    response = send(api, "zadarma", start, {})
    assert response.status_code == 200 and "caller_name" not in response.json()
    extensions = {u["extension"] for u in stack.db("telephony").users.find()}
    assert response.json()["redirect"] in extensions


# call back, call log filters, reports
def test_missed_call_called_back_and_reports(stack, api, key_headers, unique):
    agent, owner = add_user(stack, name="Agent"), add_user(stack, name="Owner")
    v = values(unique, ext1=agent["extension"], ext2=owner["extension"])
    contact = make_contact(api, v["caller"], owner["id"])
    replay(api, "canonical", fixture("canonical", "queue_missed", **v), key_headers)
    missed = get_call(api, call_record(stack, "pbx1", v["call"])["_id"])
    assert missed["missed"] and missed["called_back"] is False

    # the call log is read from the search index, fed by the call events (within a second)
    listed = wait(lambda: (lambda page: page if page["total"] == 1 else None)(api.get(
        "/calls", params={"contact_id": contact["id"], "missed": "true", "called_back": "false",
                          "include_total": "true"}).json()))
    assert listed and [c["id"] for c in listed["items"]] == [missed["id"]]
    window = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z"}
    before = api.get("/reports/calls", params={"group_by": "agent", **window}).json()

    back = values(unique, caller=v["caller"], ext1=agent["extension"])
    replay(api, "canonical", fixture("canonical", "outbound", **back), key_headers)
    callback = call_record(stack, "pbx1", back["call"])
    assert get_call(api, missed["id"])["called_back"] is True
    assert get_call(api, missed["id"])["called_back_by"] == callback["_id"]

    after = api.get("/reports/calls", params={"group_by": "agent", **window}).json()
    assert after["missed_not_called_back"] == before["missed_not_called_back"] - 1
    row = next(r for r in after["rows"] if r["key"] == agent["id"])
    assert row["calls"] == 2 and row["answered"] == 1 and row["missed"] == 1
    assert row["talk_s"] == 60 and row["avg_talk_s"] == 60.0
    by_day = api.get("/reports/calls", params={"group_by": "day", **window}).json()
    assert [r["key"] for r in by_day["rows"]] == ["2026-11-20"]
    assert by_day["totals"]["calls"] == after["totals"]["calls"]
    assert api.get("/reports/calls", params={"group_by": "week"}).status_code == 422
    assert api.get("/calls", params={"direction": "sideways"}).status_code == 422
    assert api.get("/calls/nope").status_code == 404

    page = wait(lambda: (lambda p: p if p["next_cursor"] else None)(api.get(
        "/calls", params={"agent_id": agent["id"], "limit": 1}).json()))
    assert page and len(page["items"]) == 1
    # the missed call, called back since, is no longer listed as waiting for it
    assert wait(lambda: api.get("/calls", params={
        "contact_id": contact["id"], "missed": "true", "called_back": "false",
        "include_total": "true"}).json()["total"] == 0)
    rest = api.get("/calls", params={"agent_id": agent["id"], "limit": 1,
                                     "cursor": page["next_cursor"]}).json()
    assert rest["items"][0]["id"] != page["items"][0]["id"]


# click-to-call
@pytest.fixture(scope="module")
def ami():
    server = AmiServer(port=AMI_PORT, secret=AMI_SECRET)
    yield server
    server.close()


def test_click_to_call_speaks_ami_originate(stack, api, ami, unique):
    agent = add_user(stack)
    to = mobile()
    ami.received.clear()
    response = api.post("/calls", json={"to": to, "agent_id": agent["id"]})
    assert response.status_code == 201, response.text
    call = response.json()
    assert call["originate"]["adapter"] == "ami" and call["originate"]["status"] == "queued"
    assert call["direction"] == "outbound" and call["number"] == to
    assert call["agent_id"] == agent["id"]

    done = wait(lambda: get_call(api, call["id"])["originate"]["status"] == "answered")
    assert done, get_call(api, call["id"])
    final = get_call(api, call["id"])["originate"]
    assert final["pbx_call_id"] == "1700000000.42"
    assert ami.errors == []
    assert ami.actions() == ["Login", "Originate", "Logoff"]
    login, originate, logoff = ami.received
    prefix = f"crm-{call['id']}"
    assert login == ["Action: Login", f"ActionID: {prefix}-1", "Username: crm", f"Secret: {AMI_SECRET}"]
    assert originate == [
        "Action: Originate", f"ActionID: {prefix}-2", f"Channel: PJSIP/{agent['extension']}",
        "Context: from-internal", f"Exten: {to}", "Priority: 1",
        f"CallerID: \"{to}\" <{COMPANY_DID}>", "Timeout: 5000", "Async: true",
        f"Variable: CRM_CALL_ID={call['id']}"]
    assert logoff == ["Action: Logoff", f"ActionID: {prefix}-3"]


def test_click_to_call_busy_agent_and_bad_input(stack, api, ami, unique):
    agent = add_user(stack)
    ami.reason = "5"
    try:
        call = api.post("/calls", json={"to": mobile(), "agent_id": agent["id"]}).json()
        assert wait(lambda: get_call(api, call["id"])["state"] == "ended")
        final = get_call(api, call["id"])
        assert final["outcome"] == "busy" and final["originate"]["status"] == "busy"
    finally:
        ami.reason = "4"
    response = api.post("/calls", json={"to": "not a number", "agent_id": agent["id"]})
    assert response.status_code == 422 and "to" in response.json()["error"]["details"]["fields"]
    response = api.post("/calls", json={"to": mobile(), "agent_id": "nobody"})
    assert response.status_code == 422 and "agent_id" in response.json()["error"]["details"]["fields"]
    assert api.post("/calls", json={}).status_code == 422


class _Recorder(BaseHTTPRequestHandler):
    received = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.received.append((self.path, dict(self.headers), body))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_click_to_call_through_an_http_callback_url(stack, api, unique):
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/originate"
    stack.stop_service("telephony")
    stack.start_service("telephony", TELEPHONY_ORIGINATE="http", TELEPHONY_ORIGINATE_URL=url,
                        TELEPHONY_ORIGINATE_SECRET="hook-secret")
    try:
        stack.wait_service("telephony")
        agent = add_user(stack)
        to = mobile()
        response = api.post("/calls", json={"to": to, "agent_id": agent["id"]})
        assert response.status_code == 201, response.text
        call = response.json()
        assert call["originate"]["adapter"] == "http" and call["originate"]["status"] == "requested"
        path, headers, body = _Recorder.received[-1]
        assert path == "/originate"
        assert json.loads(body) == {"call_id": call["id"], "agent_id": agent["id"],
                                    "extension": agent["extension"], "to": to,
                                    "caller_id": COMPANY_DID}
        digest = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
        assert headers["X-CRM-Signature"] == f"sha256={digest}"
    finally:
        server.shutdown()
        stack.stop_service("telephony")
        stack.start_service("telephony")
        stack.wait_service("telephony")


# the next event of a known call is one conditional write; a stale read falls back
class _KnownCaller:
    def lookup(self, params):
        return {"items": [{"id": "c-known", "first_name": "Ada", "last_name": "Known",
                           "owner_id": None}]}


def test_next_event_is_one_write_and_a_stale_read_takes_the_two_step_path(stack, unique):
    from services.telephony.calls import Calls
    from crm_common.config import load_settings
    from services.telephony.store import TelephonyStore

    class CountingStore(TelephonyStore):
        stale, updates = None, 0

        def get_by_key(self, provider, call_id):
            return dict(self.stale) if self.stale else super().get_by_key(provider, call_id)

        def update_call(self, *args, **kwargs):
            self.updates += 1
            return super().update_call(*args, **kwargs)

    store = CountingStore(stack.db("telephony"), None)
    calls = Calls(store, None, load_settings().telephony, _KnownCaller(), "IT")

    def event(call, n, state, second, **extra):
        return {"event_id": f"{call}-{n}", "provider": "unit", "call_id": call,
                "direction": "inbound", "from": "+393471234567", "to": COMPANY_DID,
                "state": state, "occurred_at": f"2026-10-01T10:{second // 60:02d}:{second % 60:02d}Z",
                **extra}

    # in order: answered and ended each land with one conditional write (no read-back step)
    call = f"in-order-{unique}"
    calls.ingest(event(call, 1, "ringing", 0))
    for n, state, second in ((2, "answered", 5), (3, "ended", 45)):
        store.updates = 0
        answer, events = calls.ingest(event(call, n, state, second))
        assert store.updates == 1, state
        assert [e["type"] for e in events] == [f"call_{state}"]
    doc = store.get_by_key("unit", call)
    assert (doc["state"], doc["outcome"], doc["missed"]) == ("ended", "answered", False)
    assert (doc["talk_s"], doc["duration_s"]) == (40, 45)
    store.updates = 0
    assert calls.ingest(event(call, 3, "ended", 45))[0]["duplicate"] is True  # its repeat
    assert store.updates == 0 and store.get_by_key("unit", call) == doc

    # ended computed from a read taken before "answered" landed: the write's condition
    # (answered_at as read) refuses it, and the two-step path gets the outcome right
    call = f"stale-{unique}"
    calls.ingest(event(call, 1, "ringing", 0))
    before_answer = store.get_by_key("unit", call)
    calls.ingest(event(call, 2, "answered", 5))
    store.stale, store.updates = before_answer, 0
    answer, events = calls.ingest(event(call, 3, "ended", 65))
    store.stale = None
    assert store.updates >= 2  # the refused write, then facts and transition
    doc = store.get_by_key("unit", call)
    assert (doc["state"], doc["outcome"], doc["missed"]) == ("ended", "answered", False)
    assert (doc["talk_s"], doc["duration_s"]) == (60, 65)
    assert [e["type"] for e in events] == ["call_ended"]


def test_an_agents_older_announcement_handled_last_changes_nothing(stack, unique):
    """One user's announcements may be handled in either order (concurrent workers; the
    gateway announces every user at its start beside a change made then): the extension
    that decides whose calls an agent sees is the latest announced, not the last handled."""
    from datetime import datetime, timedelta, timezone
    from services.telephony.calls import Calls
    from crm_common.config import load_settings
    from crm_common.timeutil import to_iso
    from services.telephony.store import TelephonyStore

    store = TelephonyStore(stack.db("telephony"), None)
    calls = Calls(store, None, load_settings().telephony, _KnownCaller(), "IT")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    agent = f"agent-{unique}"

    def announce(extension, at):
        calls.user_upserted({"occurred_at": to_iso(at), "data": {"user": {
            "id": agent, "name": "Agent", "role": "agent", "active": True, "extension": extension}}})

    announce(f"71{unique[-3:]}", now)
    announce(f"72{unique[-3:]}", now - timedelta(minutes=1))  # older, handled last
    assert store.users.find_one({"_id": agent})["extension"] == f"71{unique[-3:]}"
    assert store.user_by_extension(f"72{unique[-3:]}") is None
    announce(f"73{unique[-3:]}", now + timedelta(seconds=1))
    assert store.user_by_extension(f"73{unique[-3:]}")["_id"] == agent
    announce(f"73{unique[-3:]}", now + timedelta(seconds=1))  # the same again: as it was
    assert store.users.count_documents({"_id": agent}) == 1
    # a copy stored before copies had a time is replaced by any announcement
    store.users.insert_one({"_id": f"{agent}-old", "extension": None, "name": "Old",
                            "role": "agent", "active": True})
    agent = f"{agent}-old"
    announce(f"74{unique[-3:]}", now - timedelta(days=1))
    assert store.users.find_one({"_id": agent})["extension"] == f"74{unique[-3:]}"
