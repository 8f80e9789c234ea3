"""Inbound requests through the real stack (docs/leads.md): web forms (JSON and
form-encoded, UTM, CORS, honeypot, limits), messenger messages, Telegram updates; matching
or creating the contact; and what follows: a deal, an owner, a first-touch task, a
notification, the timeline; a request survives the deals service being down."""
import os
import time
import uuid

import pytest
import requests

# the gateway reads the client IP from X-Forwarded-For behind one proxy: each test posts
# from its own address, so per-IP limits of one test do not touch another
os.environ["CRM_TRUSTED_PROXY_HOPS"] = "1"
os.environ["CRM_FORM_RATE_PER_IP_PER_MINUTE"] = "20"


def wait(predicate, timeout=20, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def an_ip():
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


def create_form(api, **body):
    body.setdefault("name", f"Form {uuid.uuid4().hex[:6]}")
    # a team or user named in the rule reaches the contacts service by an event: retry
    answer = wait(lambda: (lambda r: r if r.status_code != 422 else None)(
        api.post("/forms", json=body)), timeout=10)
    answer = answer or api.post("/forms", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def submit(stack, key, ip=None, json=None, data=None, headers=None):
    headers = {"X-Forwarded-For": ip or an_ip(), **(headers or {})}
    return requests.post(f"{stack.base_url}/api/v1/forms/{key}/submissions", json=json,
                         data=data, headers=headers, allow_redirects=False, timeout=15)


def request_of(api, request_id, status=("routed",), timeout=20):
    def ready():
        found = api.get(f"/inbound/requests/{request_id}")
        return found.json() if found.status_code == 200 and found.json()["status"] in status else None
    return wait(ready, timeout)


def contact_by_email(api, email):
    return api.get("/contacts/lookup", params={"email": email}).json()["items"]


def ready_in(stack, queue):
    """Messages waiting in a queue (not taken by a consumer)."""
    from kombu import Connection
    with Connection(stack.amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue, passive=True).message_count


def count_requests(api, form_id):
    return len(api.get("/inbound/requests", params={"form_id": form_id, "limit": 500}).json()["items"])


# capture ---------------------------------------------------------------------------------

def test_json_form_post_becomes_a_lead_with_its_utm_and_raw_payload(stack, api, unique,
                                                                    record_events):
    events = record_events("contacts", "lead_captured")
    form = create_form(api, source="website", tags=["web"])
    email = f"anna-{unique}@example.com"
    posted = {"name": "Anna Rossi", "email": email, "phone": "+39 347 123 4567",
              "message": "Please call me", "utm_source": "google", "utm_medium": "cpc",
              "utm_campaign": "winter", "referrer": "https://example.com/pricing", "extra": 1}
    answer = submit(stack, form["key"], json=posted)
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["id"]

    stored = request_of(api, request_id, status=("captured", "routed"))
    assert stored["payload"] == posted
    assert stored["utm"] == {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "winter"}
    assert stored["meta"]["referrer"] == "https://example.com/pricing"
    assert stored["contact_created"] is True

    [contact] = contact_by_email(api, email)
    assert (contact["first_name"], contact["last_name"]) == ("Anna", "Rossi")
    assert contact["phones"][0]["e164"] == "+393471234567"
    assert contact["status"] == "lead" and contact["source"] == "website" and contact["tags"] == ["web"]
    assert contact["acquisition"]["utm_campaign"] == "winter"
    assert contact["acquisition"]["request_id"] == request_id

    [event] = events.wait_for(lambda e: e["data"]["request_id"] == request_id)
    data = event["data"]
    assert event["event_id"] == f"lead:{request_id}"
    assert data["contact_id"] == contact["id"] and data["contact_created"] is True
    assert data["utm"] == {"source": "google", "medium": "cpc", "campaign": "winter"}
    assert data["channel"] == "form" and data["form_id"] == form["id"]
    timeline = api.get(f"/contacts/{contact['id']}/timeline", params={"kind": "lead_captured"}).json()
    assert [t["ref"]["id"] for t in timeline["items"]] == [request_id]
    assert api.get(f"/forms/{form['id']}").json()["submissions"] == 1


def test_form_encoded_post_is_redirected_and_matches_the_known_contact(stack, api, unique):
    email = f"known-{unique}@example.com"
    known = api.post("/contacts", json={"first_name": "Known", "emails": [email]}).json()
    form = create_form(api, redirect_url="https://example.com/thanks",
                       fields={"your-mail": "email", "tel": "phone", "who": "full_name"})
    number = f"+39 02 {int(unique, 16) % 10 ** 7:07d}"  # unique in the session's base
    answer = submit(stack, form["key"], data={"your-mail": email.upper(), "tel": number,
                                               "who": "Known Person"})
    assert answer.status_code == 303 and answer.headers["Location"] == "https://example.com/thanks"
    [stored] = api.get("/inbound/requests", params={"form_id": form["id"]}).json()["items"]
    stored = request_of(api, stored["id"], status=("captured", "routed"))
    assert stored["contact_id"] == known["id"] and stored["contact_created"] is False
    [contact] = contact_by_email(api, email)
    assert contact["id"] == known["id"]
    # the new phone is added, the name given before is kept
    assert [p["e164"] for p in contact["phones"]] == [number.replace(" ", "")]
    assert contact["first_name"] == "Known" and contact["last_name"] == "Person"


def test_honeypot_answers_as_accepted_but_creates_nothing(stack, api, unique):
    form = create_form(api, honeypot_field="website")
    email = f"bot-{unique}@example.com"
    answer = submit(stack, form["key"], json={"email": email, "website": "http://spam.example"})
    assert answer.status_code == 202 and set(answer.json()) == {"id", "status"}
    # a genuine post after it, captured: the bot's would have been stored and captured too
    genuine = submit(stack, form["key"], json={"email": f"human-{unique}@example.com"})
    assert genuine.status_code == 202, genuine.text
    assert request_of(api, genuine.json()["id"], status=("captured", "routed"))
    assert contact_by_email(api, email) == []
    assert count_requests(api, form["id"]) == 1
    assert api.get(f"/forms/{form['id']}").json()["spam"] == 1


def test_bad_posts_get_clear_errors_and_store_nothing(stack, api, unique):
    form = create_form(api)
    assert submit(stack, "no-such-form", json={"email": "a@example.com"}).status_code == 404
    nothing = submit(stack, form["key"], json={"name": "No Way To Reach", "message": "hi"})
    assert nothing.status_code == 422 and nothing.json()["error"]["code"] == "validation_error"
    huge = submit(stack, form["key"], json={"email": f"big-{unique}@example.com", "message": "x" * 70000})
    assert huge.status_code == 413
    wrong_type = requests.post(f"{stack.base_url}/api/v1/forms/{form['key']}/submissions",
                               data="email=x", headers={"Content-Type": "text/plain"}, timeout=10)
    assert wrong_type.status_code == 415
    assert count_requests(api, form["id"]) == 0
    assert contact_by_email(api, f"big-{unique}@example.com") == []
    # a deleted form's key stops working
    assert api.delete(f"/forms/{form['id']}").status_code == 200
    assert submit(stack, form["key"], json={"email": f"late-{unique}@example.com"}).status_code == 404


def test_cors_only_for_the_forms_origins(stack, api, unique):
    form = create_form(api, allowed_origins=["https://shop.example.com"])
    url = f"{stack.base_url}/api/v1/forms/{form['key']}/submissions"
    ok = requests.options(url, headers={"Origin": "https://shop.example.com",
                                        "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "content-type"}, timeout=10)
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    other = requests.options(url, headers={"Origin": "https://evil.example.net",
                                           "Access-Control-Request-Method": "POST"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers

    posted = submit(stack, form["key"], json={"email": f"cors-{unique}@example.com"},
                    headers={"Origin": "https://shop.example.com"})
    assert posted.status_code == 202
    assert posted.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    refused = submit(stack, form["key"], json={"email": f"evil-{unique}@example.com"},
                     headers={"Origin": "https://evil.example.net"})
    assert refused.status_code == 403
    assert contact_by_email(api, f"evil-{unique}@example.com") == []


def first_refusal(post, tries):
    """How many posts passed before the first 429 (None: never refused)."""
    for n in range(tries):
        code = post(n)
        if code == 429:
            return n
        assert code == 202, code
    return None


def test_rate_limits_per_ip_and_per_form(stack, api, unique):
    """Limits count per fixed minute window (a window may end mid-test: the count starts
    again, so up to twice the limit may pass before the first refusal)."""
    form = create_form(api)
    ip = an_ip()
    passed = first_refusal(lambda n: submit(stack, form["key"], ip=ip, json={
        "email": f"r{n}-{unique}@example.com"}).status_code, 45)
    assert passed is not None and passed >= 20, passed
    # another address is not limited by that one
    assert submit(stack, form["key"], json={"email": f"other-{unique}@example.com"}).status_code == 202

    small = create_form(api, rate_limit_per_minute=2)
    passed = first_refusal(lambda n: submit(stack, small["key"], json={
        "email": f"s{n}-{unique}@example.com"}).status_code, 8)
    assert passed is not None and passed >= 2, passed


# messengers --------------------------------------------------------------------------------

def test_messages_are_stored_once_and_matched_by_handle(stack, api, make_api_key, unique):
    integration = make_api_key(["inbound:write"])
    route = create_form(api, kind="channel", channel="whatsapp", source="whatsapp")
    body = {"channel": "whatsapp", "sender": {"handle": f"wa-{unique}", "name": "Maria Bianchi",
                                              "phone": "+39 333 000 1111"},
            "text": "Hello, a quote please", "external_id": f"m1-{unique}"}
    first = integration.post("/inbound/messages", json=body)
    assert first.status_code == 202, first.text
    again = integration.post("/inbound/messages", json=body)
    assert again.json()["id"] == first.json()["id"]
    stored = request_of(api, first.json()["id"], status=("captured", "routed"))
    assert stored["form_id"] == route["id"] and stored["source"] == "whatsapp"
    contact = api.get(f"/contacts/{stored['contact_id']}").json()
    assert contact["messengers"] == [{"channel": "whatsapp", "handle": f"wa-{unique}"}]

    later = integration.post("/inbound/messages", json={
        "channel": "whatsapp", "sender": {"handle": f"wa-{unique}"}, "text": "Any news?",
        "external_id": f"m2-{unique}"})
    second = request_of(api, later.json()["id"], status=("captured", "routed"))
    assert second["contact_id"] == contact["id"] and second["contact_created"] is False

    # an SMS sender's handle is its number: the lead has it as a phone, no messenger
    # (a handle on "sms" once failed the capture, retried for ever)
    digits = "".join(str(ord(c) % 10) for c in unique)[-7:].rjust(7, "0")
    sms = integration.post("/inbound/messages", json={
        "channel": "sms", "sender": {"handle": f"+39348{digits}"}, "text": "Call me"})
    assert sms.status_code == 202, sms.text
    texted = request_of(api, sms.json()["id"], status=("captured", "routed"))
    lead = api.get(f"/contacts/{texted['contact_id']}").json()
    assert [p["e164"] for p in lead["phones"]] == [f"+39348{digits}"] and lead["messengers"] == []

    assert integration.post("/inbound/messages", json={
        "channel": "chat", "sender": {"name": "Nobody"}, "text": "hi"}).status_code == 422
    assert integration.post("/inbound/messages", json={
        "channel": "pigeon", "sender": {"handle": "x"}}).status_code == 422
    reader = make_api_key(["contacts:read"])
    assert reader.post("/inbound/messages", json=body).status_code == 403


def telegram_update(update_id, user_id, text="Hi", username=None, **extra):
    sender = {"id": user_id, "is_bot": False, "first_name": "Ivan", "last_name": "Petrov",
              "language_code": "en"}
    if username:
        sender["username"] = username
    return {"update_id": update_id, "message": {
        "message_id": update_id, "from": sender, "chat": {"id": user_id, "type": "private"},
        "date": 1795000000, "text": text, **extra}}


def test_telegram_updates_as_telegram_sends_them(stack, api, unique):
    secret = f"tg{unique}"
    route = create_form(api, kind="channel", channel="telegram", source="telegram",
                        telegram_secret_token=secret)
    url = f"{stack.base_url}/api/v1/inbound/telegram/{route['key']}"
    user_id = int(time.time() * 1000) % 10 ** 9
    update = telegram_update(1000 + user_id % 1000, user_id, username=f"ivan_{unique}",
                             contact={"phone_number": "+393471112233", "user_id": user_id})
    assert requests.post(url, json=update, timeout=10).status_code == 403
    assert requests.post(url, json=update, headers={
        "X-Telegram-Bot-Api-Secret-Token": "wrong"}, timeout=10).status_code == 403
    ok = requests.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}, timeout=10)
    assert ok.status_code == 200, ok.text
    # Telegram retries an update it thinks failed: the same update_id is one request
    repeat = requests.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}, timeout=10)
    assert repeat.json()["id"] == ok.json()["id"]
    stored = request_of(api, ok.json()["id"], status=("captured", "routed"))
    assert stored["payload"]["update_id"] == update["update_id"]
    contact = api.get(f"/contacts/{stored['contact_id']}").json()
    assert {m["handle"] for m in contact["messengers"]} == {str(user_id), f"@ivan_{unique}"}
    assert contact["phones"][0]["e164"] == "+393471112233"
    assert contact["source"] == "telegram"

    # a later message from the same user (no username now) is the same contact
    later = requests.post(url, json=telegram_update(update["update_id"] + 1, user_id, "Price?"),
                          headers={"X-Telegram-Bot-Api-Secret-Token": secret}, timeout=10)
    assert request_of(api, later.json()["id"], status=("captured", "routed"))["contact_id"] == contact["id"]
    # updates without a person's message are acknowledged and ignored
    ignored = requests.post(url, json={"update_id": 5, "my_chat_member": {}},
                            headers={"X-Telegram-Bot-Api-Secret-Token": secret}, timeout=10)
    assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"


def test_forms_are_managed_by_managers_with_checked_settings(api, make_user, unique):
    agent = make_user("agent")
    assert agent.post("/forms", json={"name": "Mine"}).status_code == 403
    assert agent.get("/inbound/requests").status_code == 403
    bad = api.post("/forms", json={"name": "Bad", "owner_rule": {"kind": "fixed", "user_id": "nobody"}})
    assert bad.status_code == 422 and "owner_rule" in bad.json()["error"]["details"]["fields"]
    bad = api.post("/forms", json={"name": "Bad", "pipeline_id": "no-such-pipeline"})
    assert bad.status_code == 422 and "pipeline_id" in bad.json()["error"]["details"]["fields"]
    bad = api.post("/forms", json={"name": "Bad", "first_task": {"working_hours": {
        "start": "18:00", "end": "09:00"}}})
    assert bad.status_code == 422
    assert api.post("/forms", json={"name": "Bad", "kind": "channel"}).status_code == 422
    form = create_form(api, name=f"Contact us {unique}")
    changed = api.patch(f"/forms/{form['id']}", json={"allowed_origins": ["https://a.example"]})
    assert changed.status_code == 200 and changed.json()["allowed_origins"] == ["https://a.example"]
    assert changed.json()["key"] == form["key"]
    assert api.patch("/forms/nope", json={"name": "x"}).status_code == 404


# what follows: deal, owner, first task, notification, timeline --------------------------------

def make_pipeline(api, unique):
    body = {"name": f"Inbound {unique}", "stages": [
        {"name": "New lead", "probability": 10}, {"name": "Qualified", "probability": 40},
        {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]}
    created = api.post("/pipelines", json=body)
    assert created.status_code == 201, created.text
    return created.json()


def deals_of(api, contact_id):
    return api.get("/deals", params={"contact_id": contact_id}).json()["items"]


def test_a_form_lead_gets_a_deal_an_owner_a_first_task_a_notice_and_a_timeline(
        stack, api, make_user, unique):
    team = f"inbound-{unique}"
    agents = [make_user("agent", team=team) for _ in range(2)]
    by_id = {a.user["id"]: a for a in agents}
    pipeline = make_pipeline(api, unique)
    form = create_form(api, pipeline_id=pipeline["id"], source="website",
                       owner_rule={"kind": "round_robin", "team": team},
                       first_task={"due_minutes": 15, "kind": "call"})
    routed = []
    for n in range(3):
        answer = submit(stack, form["key"], json={"name": f"Lead {n} {unique}",
                                                  "email": f"lead{n}-{unique}@example.com"})
        assert answer.status_code == 202, answer.text
        routed.append(request_of(api, answer.json()["id"]))
        assert routed[-1], "the request was not routed"
    owners = [r["owner_id"] for r in routed]
    assert set(owners) == set(by_id) and owners[0] == owners[2] != owners[1]
    assert {r["owner_reason"] for r in routed} == {"round_robin"}

    first = routed[0]
    [deal] = deals_of(api, first["contact_id"])
    assert deal["id"] == first["deal_id"] and first["deal_created"] is True
    assert (deal["pipeline_id"], deal["stage_id"]) == (pipeline["id"], pipeline["stages"][0]["id"])
    assert deal["owner_id"] == first["owner_id"] and deal["source"] == "website"
    contact = api.get(f"/contacts/{first['contact_id']}").json()
    assert contact["owner_id"] == first["owner_id"]

    owner = by_id[first["owner_id"]]
    tasks = wait(lambda: owner.get("/tasks", params={"contact_id": contact["id"]}).json()["items"])
    [task] = tasks
    assert task["kind"] == "call" and task["assignee_id"] == owner.user["id"]
    assert task["deal_id"] == deal["id"]
    due = task["due_at"]
    received = first["received_at"]
    from datetime import datetime
    minutes = (datetime.fromisoformat(due.replace("Z", "+00:00"))
               - datetime.fromisoformat(received.replace("Z", "+00:00"))).total_seconds() / 60
    assert 14.9 < minutes < 15.1
    inbox = wait(lambda: [n for n in owner.get("/notifications").json()["items"]
                          if n.get("type") == "lead_routed"])
    assert inbox, "the owner was not told about the lead"
    kinds = wait(lambda: (lambda k: k if {"lead_captured", "deal_created", "lead_routed", "task_created"} <= k else None)(
        {t["kind"] for t in api.get(f"/contacts/{contact['id']}/timeline").json()["items"]}))
    assert kinds, "timeline incomplete"
    [routed_entry] = [t for t in api.get(f"/contacts/{contact['id']}/timeline").json()["items"]
                      if t["kind"] == "lead_routed"]
    assert owner.user["name"] in routed_entry["summary"] and owner.user["id"] not in routed_entry["summary"]

    # the same person writes again: the open deal in that pipeline takes the request
    again = submit(stack, form["key"], json={"email": f"lead0-{unique}@example.com",
                                             "message": "Any news?"})
    second = request_of(api, again.json()["id"])
    assert second["deal_id"] == deal["id"] and second["deal_created"] is False
    assert second["owner_id"] == first["owner_id"] and second["owner_reason"] == "contact_owner"
    assert len(deals_of(api, first["contact_id"])) == 1


def test_the_contacts_owner_keeps_the_lead(stack, api, make_user, unique):
    owner = make_user("agent")
    other = make_user("agent")
    email = f"owned-{unique}@example.com"
    api.post("/contacts", json={"first_name": "Owned", "emails": [email], "owner_id": owner.user["id"]})
    form = create_form(api, owner_rule={"kind": "fixed", "user_id": other.user["id"]})
    answer = submit(stack, form["key"], json={"email": email})
    routed = request_of(api, answer.json()["id"])
    assert routed["owner_id"] == owner.user["id"] and routed["owner_reason"] == "contact_owner"
    fresh = submit(stack, form["key"], json={"email": f"fresh-{unique}@example.com"})
    routed = request_of(api, fresh.json()["id"])
    assert routed["owner_id"] == other.user["id"] and routed["owner_reason"] == "fixed_user"


def test_a_request_waits_for_the_deals_service_and_is_not_lost(stack, api, unique):
    form = create_form(api)
    stack.stop_service("deals")
    try:
        answer = submit(stack, form["key"], json={"email": f"patient-{unique}@example.com",
                                                  "name": "Patient Lead"})
        assert answer.status_code == 202, answer.text
        stored = request_of(api, answer.json()["id"], status=("captured",))
        assert stored and stored["deal_id"] is None
        # its lead_captured waits in the stopped deals service's queue, the request with it
        queue = "evt-contacts-lead_captured--deals.on_lead_captured"
        assert wait(lambda: ready_in(stack, queue) >= 1, timeout=10)
        assert api.get(f"/inbound/requests/{stored['id']}").json()["status"] == "captured"
    finally:
        stack.start_service("deals")
        stack.wait_service("deals", timeout=120)
    routed = request_of(api, stored["id"], timeout=30)
    assert routed and routed["deal_id"]
    # the list reads the search index, which the deal's event reaches within a second
    assert wait(lambda: [d["id"] for d in deals_of(api, stored["contact_id"])] == [routed["deal_id"]])
