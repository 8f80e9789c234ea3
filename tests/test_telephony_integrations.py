"""Telephony integrations through the real stack (issue 24): missed calls never dropped,
click-to-call refusals, provider events the platform ignores, Twilio's <Dial> legs and
SharedKey signatures, and telephony settings changed at runtime."""
import os
import time
import uuid
from datetime import datetime, timezone

import pytest
from twilio.request_validator import RequestValidator

from tests.ami_server import AmiServer
from tests.stack import free_port
# the helpers (and the environment the stack starts with) of the telephony tests
from tests.test_telephony import (AMI_PORT, AMI_SECRET, COMPANY_DID, add_user, call_record,
                                  fixture, get_call, make_contact, mobile, replay, send,
                                  values, wait, zadarma_sign, TWILIO_TOKEN)

SHARED_KEY_SECRET = "test-twilio-shared-key-secret"
os.environ["TWILIO_WEBHOOK_SHARED_KEY_SECRET"] = SHARED_KEY_SECRET  # read when the stack starts


def twilio_post(api, form, token=TWILIO_TOKEN, algorithm=None, signed_url=None):
    """Signed by twilio's own RequestValidator; `algorithm` HMAC_SHA256: as a Webhook Rule
    with a SharedKey signs (and says so in X-Twilio-Webhooks-Signature-Settings)."""
    url = signed_url or api.url("/telephony/twilio")
    headers = {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, form, algorithm)}
    if algorithm:
        headers["X-Twilio-Webhooks-Signature-Settings"] = f"key=KS0001,algorithm={algorithm}"
    return api.post("/telephony/twilio", data=form, headers=headers)


@pytest.fixture(scope="module")
def key_headers():
    return {}


@pytest.fixture(scope="module")
def ami(api):
    """An AMI server of this module's own, put in force through the settings API (the
    telephony tests' server may still hold the environment's port)."""
    server = AmiServer(port=free_port(), secret=AMI_SECRET)
    assert api.patch("/settings/telephony", json={"ami_port": server.port}).status_code == 200
    time.sleep(2.5)  # every replica's settings cache (SETTINGS_CACHE_S) has expired
    yield server
    api.patch("/settings/telephony", json={"ami_port": None})
    server.close()
    time.sleep(2.5)


def _until(predicate, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


def tasks_of_call(stack, call_doc_id):
    return list(stack.db("tasks").tasks.find({"call_id": call_doc_id}))


def missed_call(unique, caller, **extra):
    """A call that rang no agent and ended unanswered."""
    v = values(unique, caller=caller)
    return v, [
        {"event_id": f"{v['call']}-1", "provider": "pbx1", "call_id": v["call"],
         "direction": "inbound", "from": caller, "to": extra.get("to", COMPANY_DID),
         "state": "ringing", "occurred_at": "2026-11-20T09:00:00Z"},
        {"event_id": f"{v['call']}-2", "provider": "pbx1", "call_id": v["call"],
         "state": "ended", "outcome": "no_answer", "occurred_at": "2026-11-20T09:00:30Z"}]


# item 8: a missed call is never dropped; a user's new contact is theirs
def test_missed_call_of_an_ownerless_contact_gives_the_admins_a_callback_task(
        stack, api, key_headers, unique):
    contact = make_contact(api, mobile(), None)  # explicitly nobody's
    assert contact["owner_id"] is None
    v, events = missed_call(unique, contact["phones"][0]["e164"])
    replay(api, "canonical", events, key_headers)
    doc = call_record(stack, "pbx1", v["call"])
    assert doc["missed"] and doc["agent_id"] is None and doc["owner_id"] is None
    tasks = wait(lambda: tasks_of_call(stack, doc["_id"]))
    assert len(tasks) == 1, tasks
    admins = [u["_id"] for u in stack.db("tasks").users.find({"role": "admin"}).sort("_id", 1)]
    assert tasks[0]["assignee_id"] == admins[0]
    assert tasks[0]["contact_id"] == contact["id"]

    # timeline entries of the call carry the call's own time (item 7)
    def entries():
        items = api.get(f"/contacts/{contact['id']}/timeline").json()["items"]
        return {e["kind"]: e for e in items if e["kind"].startswith("call_")}
    found = wait(lambda: {"call_ended", "call_missed"} <= set(entries()) and entries())
    assert found["call_missed"]["occurred_at"] == "2026-11-20T09:00:30Z"
    assert found["call_ended"]["occurred_at"] == "2026-11-20T09:00:30Z"


def test_a_contact_created_by_a_user_is_theirs_unless_named_otherwise(api, make_user, unique):
    me = api.get("/users/me").json()
    mine = api.post("/contacts", json={"first_name": "Own", "phones": [mobile()]}).json()
    assert mine["owner_id"] == me["id"]
    nobody = api.post("/contacts", json={"first_name": "None", "phones": [mobile()],
                                         "owner_id": None}).json()
    assert nobody["owner_id"] is None
    agent = make_user("agent")
    other = api.post("/contacts", json={"first_name": "Other", "phones": [mobile()],
                                        "owner_id": agent.user["id"]}).json()
    assert other["owner_id"] == agent.user["id"]
    theirs = agent.post("/contacts", json={"first_name": "Agent's", "phones": [mobile()]})
    assert theirs.status_code == 201 and theirs.json()["owner_id"] == agent.user["id"]


# item 6: click-to-call refusals record nothing
def test_click_to_call_refused_by_an_unreachable_pbx_records_nothing(stack, api, unique):
    agent = add_user(stack)
    to = mobile()
    closed = free_port()  # the PBX is not there
    assert api.patch("/settings/telephony", json={"ami_port": closed}).status_code == 200
    try:
        assert _until(lambda: f":{closed}" in (api.post("/settings/telephony/test", json={
            "provider": "ami"}).json()["error"] or ""))
        response = api.post("/calls", json={"to": to, "agent_id": agent["id"]})
        assert response.status_code == 503, response.text
        assert "AMI" in response.json()["error"]["details"]["reason"]
        assert stack.db("telephony").calls.count_documents({"number": to}) == 0
    finally:
        assert api.patch("/settings/telephony", json={"ami_port": None}).status_code == 200
        time.sleep(2.5)  # every replica's settings cache (SETTINGS_CACHE_S) has expired


def test_click_to_call_to_a_do_not_contact_contact_needs_a_stated_reason(
        stack, api, ami, unique):
    agent = add_user(stack)
    to = mobile()
    contact = api.post("/contacts", json={"first_name": "Quiet", "phones": [to],
                                          "do_not_contact": True}).json()
    refused = api.post("/calls", json={"to": to, "agent_id": agent["id"]})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"]["reason"] == "do_not_contact"
    assert stack.db("telephony").calls.count_documents({"number": to}) == 0
    allowed = api.post("/calls", json={"to": to, "agent_id": agent["id"],
                                       "contact_id": contact["id"],
                                       "override_reason": "asked us to call back today"})
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["originate"]["override_reason"] == "asked us to call back today"
    audit = api.get("/audit", params={"resource_id": allowed.json()["id"]})
    if audit.status_code == 200:
        assert any("override_reason" in (e.get("fields") or []) for e in audit.json()["items"])


def test_click_to_call_with_no_pbx_configured_answers_503(stack, api, unique):
    agent = add_user(stack)
    stack.stop_service("telephony")
    stack.start_service("telephony", TELEPHONY_ORIGINATE="none")
    try:
        stack.wait_service("telephony")
        to = mobile()
        response = api.post("/calls", json={"to": to, "agent_id": agent["id"]})
        assert response.status_code == 503, response.text
        assert "originate" in response.json()["error"]["details"]["reason"]
        assert stack.db("telephony").calls.count_documents({"number": to}) == 0
    finally:
        stack.stop_service("telephony")
        stack.start_service("telephony")
        stack.wait_service("telephony")


# item 7: a signed Zadarma event the platform does not handle
def test_signed_zadarma_ivr_event_is_answered_and_ignored(stack, api, unique):
    form = {"event": "NOTIFY_IVR", "call_start": "2026-11-20 10:00:00",
            "pbx_call_id": f"in_{unique}", "caller_id": "390347" + unique[:6].translate(
                str.maketrans("abcdef", "123456")), "called_did": COMPANY_DID.lstrip("+")}
    response = api.post("/telephony/zadarma", data=form,
                        headers={"Signature": zadarma_sign(form)})
    assert response.status_code == 200, response.text
    assert response.json()["ignored"] is True
    assert stack.db("telephony").calls.count_documents({"call_id": f"in_{unique}"}) == 0
    wrong = api.post("/telephony/zadarma", data=form, headers={"Signature": "bm9wZQ=="})
    assert wrong.status_code == 403


# item 1: Twilio's <Dial> flow: answered and agent from the legs
def earlier_missed_calls(stack, api, key_headers, unique, caller, n=2):
    ids = []
    for i in range(n):
        v, events = missed_call(f"{unique}e{i}", caller)
        replay(api, "canonical", events, key_headers)
        ids.append(call_record(stack, "pbx1", v["call"])["_id"])
    assert wait(lambda: all(tasks_of_call(stack, i) for i in ids))
    return ids


@pytest.mark.parametrize("scenario", ["dial_no_answer", "dial_action_no_answer"])
def test_twilio_call_answered_by_no_human_is_missed(stack, api, key_headers, unique, scenario):
    owner, agent = add_user(stack, name="Owner"), add_user(stack, name="Agent")
    v = values(unique, ext1=agent["extension"])
    contact = make_contact(api, v["caller"], owner["id"])
    earlier = earlier_missed_calls(stack, api, key_headers, unique, v["caller"])
    for form in fixture("twilio", scenario, **v):
        response = twilio_post(api, form)
        assert response.status_code == 200, (form, response.text)
    if scenario == "dial_action_no_answer":  # the <Dial> action URL gets TwiML back
        assert response.headers["Content-Type"].startswith("application/json")
    doc = call_record(stack, "twilio", v["call"])
    call = get_call(api, doc["_id"])
    assert call["state"] == "ended" and call["outcome"] == "no_answer", call
    assert call["missed"] is True and call["called_back"] is False
    assert call["talk_s"] == 0 and call["duration_s"] == 24 and call["answered_at"] is None
    assert call["contact_id"] == contact["id"]
    tasks = wait(lambda: tasks_of_call(stack, doc["_id"]))
    assert len(tasks) == 1 and tasks[0]["assignee_id"] == owner["id"]
    for earlier_id in earlier:  # nobody talked to the caller: nothing was called back
        assert get_call(api, earlier_id)["called_back"] is False
        assert [t["status"] for t in tasks_of_call(stack, earlier_id)] == ["open"]


def test_twilio_dial_answered_by_the_agent_names_the_agent(stack, api, key_headers, unique):
    owner, agent = add_user(stack, name="Owner"), add_user(stack, name="Agent")
    v = values(unique, ext1=agent["extension"])
    make_contact(api, v["caller"], owner["id"])
    earlier = earlier_missed_calls(stack, api, key_headers, unique, v["caller"], n=1)
    for form in fixture("twilio", "inbound_answered", **v):
        assert twilio_post(api, form).status_code == 200
    call = get_call(api, call_record(stack, "twilio", v["call"])["_id"])
    assert call["outcome"] == "answered" and call["missed"] is False
    assert call["agent_id"] == agent["id"] and call["extension"] == agent["extension"]
    assert call["talk_s"] == 94 and call["duration_s"] == 100
    assert call["answered_at"] == "2026-11-20T10:00:06Z"
    assert wait(lambda: get_call(api, earlier[0])["called_back"] is True)

    # the <Dial> action's DialCallStatus alone (no leg callbacks subscribed)
    v = values(unique, ext1=agent["extension"])
    for form in fixture("twilio", "dial_action_answered", **v):
        response = twilio_post(api, form)
        assert response.status_code == 200, response.text
        if form.get("DialCallStatus"):
            assert response.headers["Content-Type"].startswith("text/xml")
            assert response.text.endswith("<Response/>")
    call = get_call(api, call_record(stack, "twilio", v["call"])["_id"])
    assert call["outcome"] == "answered" and call["missed"] is False and call["talk_s"] == 42


# item 2: SharedKey HMAC-SHA256 signatures, with twilio's own validator
def test_twilio_shared_key_sha256_signature_is_accepted(stack, api, unique):
    v = values(unique)
    ringing = fixture("twilio", "inbound_missed", **v)[0]
    assert twilio_post(api, ringing, SHARED_KEY_SECRET, "HMAC_SHA256").status_code == 200
    assert call_record(stack, "twilio", v["call"])["state"] == "ringing"
    # the auth token is not the key of a SharedKey-signed request, and the reverse
    other = fixture("twilio", "inbound_missed", **values(unique))[0]
    assert twilio_post(api, other, TWILIO_TOKEN, "HMAC_SHA256").status_code == 403
    assert twilio_post(api, other, SHARED_KEY_SECRET).status_code == 403
    url = api.url("/telephony/twilio")
    unknown = api.post("/telephony/twilio", data=other, headers={
        "X-Twilio-Signature": RequestValidator(SHARED_KEY_SECRET).compute_signature(
            url, other, "HMAC_SHA256"),
        "X-Twilio-Webhooks-Signature-Settings": "key=KS0001,algorithm=HMAC_MD5"})
    assert unknown.status_code == 403  # an algorithm we do not know: refused


# item 3: telephony settings through the API, in force within seconds, no restart
def test_telephony_settings_change_at_runtime(stack, api, make_user, ami, unique):
    agent = make_user("agent")
    assert agent.get("/settings/telephony").status_code == 403
    assert agent.patch("/settings/telephony", json={"caller_id": "+1"}).status_code == 403
    before = api.get("/settings/telephony")
    assert before.status_code == 200, before.text
    assert before.json()["secrets"]["twilio_auth_token"] == {"set": True, "source": "environment"}

    rotated = f"rotated-{unique}"
    base = "https://crm.example.com"
    try:
        changed = api.patch("/settings/telephony", json={"twilio_auth_token": rotated,
                                                         "public_base_url": base})
        assert changed.status_code == 200, changed.text
        assert changed.json()["secrets"]["twilio_auth_token"] == {"set": True, "source": "api"}
        assert rotated not in changed.text and rotated not in api.get("/settings/telephony").text
        stored = stack.db("telephony").settings.find_one({"_id": "telephony"})
        assert rotated not in str(stored)  # encrypted at rest

        # the next webhook is checked against the new token (every replica, no restart),
        # with the URL Twilio called: the public base URL, with or without the default port
        path = "/api/v1/telephony/twilio"

        def accepted(token, signed_url):
            form = fixture("twilio", "inbound_missed", **values(unique))[0]
            return twilio_post(api, form, token, signed_url=signed_url).status_code == 200
        assert _until(lambda: accepted(rotated, base + path))
        assert accepted(rotated, "https://crm.example.com:443" + path)
        assert not accepted(TWILIO_TOKEN, base + path)

        # test connection: says what failed
        result = api.post("/settings/telephony/test", json={"provider": "ami"}).json()
        assert result["ok"] is True, result
        api.patch("/settings/telephony", json={"ami_secret": "wrong"})
        assert _until(lambda: api.post("/settings/telephony/test",
                                       json={"provider": "ami"}).json()["ok"] is False)
        failed = api.post("/settings/telephony/test", json={"provider": "ami"}).json()
        assert failed["error"].startswith("login"), failed
        api.patch("/settings/telephony", json={"ami_port": 1})
        assert _until(lambda: (api.post("/settings/telephony/test", json={"provider": "ami"})
                               .json()["error"] or "").startswith("connect"))
        assert api.post("/settings/telephony/test", json={"provider": "sip"}).status_code == 422
    finally:
        reset = api.patch("/settings/telephony", json={
            "twilio_auth_token": None, "public_base_url": None, "ami_secret": None,
            "ami_port": None})
        assert reset.status_code == 200, reset.text
    assert _until(lambda: twilio_post(api, fixture("twilio", "inbound_missed", **values(unique))[0])
                  .status_code == 200)
    assert api.get("/settings/telephony").json()["secrets"]["twilio_auth_token"]["source"] == "environment"


# speed: the ringing answer finds the caller in telephony's own copy, with no RPC
def test_the_ringing_answer_needs_no_rpc_to_contacts(stack, api, key_headers, unique):
    owner = add_user(stack)
    contact = make_contact(api, mobile(), owner["id"])
    number = contact["phones"][0]["e164"]
    copies = stack.db("telephony").contact_phones
    assert wait(lambda: copies.find_one({"_id": contact["id"], "phones": number}), timeout=20)
    # the owner changes: the copy follows (an older event never overwrites a newer copy)
    other = add_user(stack)
    assert api.patch(f"/contacts/{contact['id']}", json={"owner_id": other["id"]}).status_code == 200
    assert wait(lambda: copies.find_one({"_id": contact["id"], "contact.owner_id": other["id"]}),
                timeout=20)
    stack.stop_service("contacts")
    try:
        v = values(unique, caller=number)
        answer = send(api, "canonical", {
            "event_id": f"{v['call']}-1", "provider": "pbx1", "call_id": v["call"],
            "direction": "inbound", "from": number, "to": COMPANY_DID, "state": "ringing"},
            key_headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["contact"]["id"] == contact["id"] and body["route_to"] == other["extension"]
    finally:
        stack.start_service("contacts")
        stack.wait_service("contacts")
    assert api.delete(f"/contacts/{contact['id']}").status_code in (200, 204)
    assert wait(lambda: copies.find_one({"_id": contact["id"], "phones": []}), timeout=20)


def test_contacts_that_announced_no_event_reach_the_copy(stack):
    """An import announces no event per contact (nor did contacts from before the copy):
    the sync pulls what changed since its last pass."""
    from services.contacts.domain import normalize_phones, search_fields
    number, now = mobile(), datetime.now(timezone.utc)
    doc = {"_id": uuid.uuid4().hex[:24], "first_name": "Imported", "last_name": "Caller",
           "emails": [], "phones": normalize_phones([{"number": number, "type": "mobile"}], "IT"),
           "owner_id": None, "tags": [], "source": "import", "status": "lead",
           "do_not_contact": False, "custom": {}, "company_id": None, "created_at": now,
           "updated_at": now, "deleted_at": None, "version": 1, "possible_duplicates": []}
    doc.update(search_fields(doc))
    stack.db("contacts").contacts.insert_one(doc)
    copies = stack.db("telephony").contact_phones
    assert wait(lambda: copies.find_one({"_id": doc["_id"], "phones": number}), timeout=30)
