"""Notifications end to end: events published on the real broker -> the notifications
service (restarted here against real local receivers: SMTP via aiosmtpd, an HTTP recorder
for SMS, Telegram and webhooks) -> SecantusDB, and the gateway's inbox/preferences API."""
import json
import time
import uuid

import pytest
from kombu import Connection

from crm_common.messaging.publish import publish_event
from tests.fake_receivers import Channels


@pytest.fixture(scope="module")
def ch(stack):
    channels = Channels(stack)
    try:
        yield channels
    finally:
        channels.close()


def wait(predicate, timeout=15, interval=0.1):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(interval)


def new_id():
    return uuid.uuid4().hex[:12]


_connections = {}


def publish(stack, source, event_type, data, event_id=None):
    """publish_event over one kept connection (a connection per event strains a busy broker)."""
    connection = _connections.get(stack.amqp_uri)
    if connection is None:
        connection = _connections[stack.amqp_uri] = Connection(stack.amqp_uri)
    return publish_event(stack.amqp_uri, source, event_type, data, event_id=event_id,
                         connection=connection)


def make_user(stack, unique, **fields):
    user_id = fields.pop("id", None) or f"u{new_id()}"
    user = {"id": user_id, "email": f"{user_id}.{unique}@crm.test", "name": f"User {user_id}",
            "role": "agent", "team": None, "manager_id": None, "active": True, "phone": None,
            "telegram_chat_id": None, "language": "en", "timezone": "UTC", **fields}
    # the gateway knows it too, so a write naming it as an owner is accepted (gateway/user_refs.py)
    stack.add_user(user_id, **{k: user[k] for k in ("email", "name", "role", "active")})
    publish(stack, "gateway", "user_upserted", {"user": user})
    users = stack.db("notifications")["users"]
    assert wait(lambda: users.find_one({"_id": user_id, "email": user["email"]})), "user copy"
    return user


def inbox(api, user_id, **params):
    response = api.get("/notifications", params={"user_id": user_id, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def wait_inbox(api, user_id, event_id, timeout=15):
    found = wait(lambda: [n for n in inbox(api, user_id) if n["event_id"] == event_id], timeout)
    return found


def deliveries(stack, event_id):
    return stack.rpc.call("notifications", "deliveries_of_event", event_id)


def wait_final(stack, event_id, count, timeout=20):
    def done():
        found = deliveries(stack, event_id)
        final = [d for d in found if d["status"] in ("delivered", "failed")]
        return found if len(found) >= count and len(final) == len(found) else None
    return wait(done, timeout) or deliveries(stack, event_id)


def later_event_handled(stack, unique):
    """Returns once a task_overdue published now (to a new user: in-app and email) has been
    handled and its email sent. The tasks events published before it came through the same
    queue first (one queue per source)."""
    user = make_user(stack, unique)
    probe = publish(stack, "tasks", "task_overdue", {"task": task(), "assignee_id": user["id"]})
    sent = wait_final(stack, probe["event_id"], 1)
    assert sent and all(d["status"] == "delivered" for d in sent), sent


def sender_caught_up(stack, unique):
    """Returns once the sending timer has looked for due deliveries since this was called:
    two events' emails sent one after the other. Its loop (service.send_due) takes the
    second only after the search for due deliveries that followed sending the first."""
    for _ in range(2):
        later_event_handled(stack, unique)


def task(title="Call back Mario", **fields):
    return {"id": f"t{new_id()}", "title": title, "due_at": "2026-12-01T10:00:00Z", **fields}


# --- who gets what ----------------------------------------------------------------------

def test_task_assigned_reaches_assignee_in_app_and_by_real_email(api, stack, ch, unique):
    user = make_user(stack, unique, name="Anna Bianchi")
    body = publish(stack, "tasks", "task_assigned",
                   {"task": task("Call <b>Mario</b>"), "assignee_id": user["id"]})
    [note] = wait_inbox(api, user["id"], body["event_id"])
    assert note["type"] == "task_assigned" and note["read_at"] is None
    assert note["title"] == "New task for you: Call <b>Mario</b>"
    [mail] = ch.smtp.wait_for(user["email"])
    message = mail["message"]
    assert message["Subject"] == "New task: Call <b>Mario</b>"
    assert message["To"] == user["email"] and "crm@crm.test" in message["From"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Hello Anna Bianchi" in text and 'the task "Call <b>Mario</b>"' in text
    assert "Call &lt;b&gt;Mario&lt;/b&gt;" in html and "<b>Mario" not in html  # escaped
    [email_delivery] = wait_final(stack, body["event_id"], 1)
    assert email_delivery["status"] == "delivered" and email_delivery["attempts"] == 1


def test_due_soon_and_overdue_go_to_assignee_escalation_to_manager(api, stack, ch, unique):
    manager = make_user(stack, unique, role="manager", name="Marco Manager")
    agent = make_user(stack, unique, manager_id=manager["id"], name="Aldo Agent")
    t = task("Send offer")
    soon = publish(stack, "tasks", "task_due_soon",
                   {"task": t, "assignee_id": agent["id"], "offset_minutes": 15})
    overdue = publish(stack, "tasks", "task_overdue", {"task": t, "assignee_id": agent["id"]})
    # no manager_id in the event: the manager comes from the user copy
    escalated = publish(stack, "tasks", "task_escalated", {"task": t, "assignee_id": agent["id"]})
    assert wait_inbox(api, agent["id"], soon["event_id"])[0]["title"] == "Due in 15 min: Send offer"
    assert wait_inbox(api, agent["id"], overdue["event_id"])
    [esc] = wait_inbox(api, manager["id"], escalated["event_id"])
    assert esc["urgent"] is True and "Aldo Agent" in esc["title"]
    assert not [n for n in inbox(api, agent["id"]) if n["event_id"] == escalated["event_id"]]
    # defaults: due soon is in-app only, overdue also by email
    assert deliveries(stack, soon["event_id"]) == []
    assert ch.smtp.wait_for(agent["email"])[0]["message"]["Subject"] == "Overdue: Send offer"


def test_missed_call_goes_to_contact_owner_else_called_agent(api, stack, ch, unique):
    owner, agent = make_user(stack, unique), make_user(stack, unique)
    with_owner = publish(stack, "telephony", "call_missed",
                         {"call": {"id": new_id()}, "contact_id": "c1", "agent_id": agent["id"],
                          "owner_id": owner["id"], "from": "+390612345678", "to": "+390698765432"})
    no_owner = publish(stack, "telephony", "call_missed",
                       {"call": {"id": new_id()}, "contact_id": None, "agent_id": agent["id"],
                        "owner_id": None, "from": "+390611111111", "to": "+390698765432"})
    assert wait_inbox(api, owner["id"], with_owner["event_id"])[0]["title"] == \
        "Missed call from +390612345678"
    assert wait_inbox(api, agent["id"], no_owner["event_id"])
    assert not [n for n in inbox(api, agent["id"]) if n["event_id"] == with_owner["event_id"]]


def test_deal_won_lost_to_owner_and_manager_assigned_to_new_owner(api, stack, ch, unique):
    manager = make_user(stack, unique, role="manager")
    owner = make_user(stack, unique, manager_id=manager["id"], name="Olga Owner")
    newcomer = make_user(stack, unique)
    deal = {"id": f"d{new_id()}", "title": "Big order", "amount": 1250000, "currency": "EUR"}
    won = publish(stack, "deals", "deal_won", {"deal": deal, "owner_id": owner["id"],
                                               "contact_id": None, "amount": 1250000,
                                               "currency": "EUR"})
    lost = publish(stack, "deals", "deal_lost", {"deal": deal, "owner_id": owner["id"],
                                                 "amount": 1, "currency": "EUR",
                                                 "lost_reason": "price"})
    assigned = publish(stack, "deals", "deal_assigned", {"deal": deal, "owner_id": newcomer["id"],
                                                         "previous_owner_id": owner["id"]})
    for person in (owner, manager):
        [n] = wait_inbox(api, person["id"], won["event_id"])
        assert n["title"] == "Won: Big order (12,500.00 EUR)"
        assert wait_inbox(api, person["id"], lost["event_id"])
    assert "Olga Owner" in wait_inbox(api, manager["id"], won["event_id"])[0]["body"]
    assert wait_inbox(api, newcomer["id"], assigned["event_id"])
    assert not [n for n in inbox(api, owner["id"]) if n["event_id"] == assigned["event_id"]]


def test_import_finished_tells_who_started_it_with_counts(api, stack, ch, unique):
    user = make_user(stack, unique)
    counts = {"rows": 120, "created": 100, "updated": 5, "skipped": 10, "failed": 5}
    body = publish(stack, "contacts", "import_finished",
                   {"import_id": "imp1", "started_by": user["id"], "counts": counts})
    [n] = wait_inbox(api, user["id"], body["event_id"])
    assert "120 rows, 100 created, 5 updated, 10 skipped, 5 failed" in n["body"]


def test_inactive_user_gets_nothing(api, stack, ch, unique):
    user = make_user(stack, unique, active=False)
    body = publish(stack, "tasks", "task_assigned", {"task": task(), "assignee_id": user["id"]})
    probe = publish(stack, "tasks", "task_assigned",
                    {"task": task(), "assignee_id": make_user(stack, unique)["id"]})
    wait_final(stack, probe["event_id"], 1)
    assert inbox(api, user["id"]) == [] and deliveries(stack, body["event_id"]) == []


# --- inbox ------------------------------------------------------------------------------

def test_inbox_unread_read_and_read_all(api, stack, ch, unique):
    user = make_user(stack, unique)
    ids = [publish(stack, "tasks", "task_due_soon",
                   {"task": task(f"T{i}"), "assignee_id": user["id"], "offset_minutes": 5})["event_id"]
           for i in range(3)]
    assert wait(lambda: len(inbox(api, user["id"])) == 3)
    count = api.get("/notifications/unread-count", params={"user_id": user["id"]})
    assert count.status_code == 200 and count.json() == {"unread": 3}
    first = inbox(api, user["id"], limit=2)
    read = api.post(f"/notifications/{first[0]['id']}/read", params={"user_id": user["id"]})
    assert read.status_code == 200 and read.json()["read_at"].endswith("Z")
    again = api.post(f"/notifications/{first[0]['id']}/read", params={"user_id": user["id"]})
    assert again.json()["read_at"] == read.json()["read_at"]  # idempotent
    unread = inbox(api, user["id"], unread="true")
    assert len(unread) == 2 and first[0]["id"] not in [n["id"] for n in unread]
    page = api.get("/notifications", params={"user_id": user["id"], "limit": 2,
                                             "include_total": "true"}).json()
    assert page["total"] == 3 and page["next_cursor"]
    rest = api.get("/notifications", params={"user_id": user["id"], "limit": 2,
                                             "cursor": page["next_cursor"]}).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert {n["event_id"] for n in page["items"] + rest["items"]} == set(ids)
    marked = api.post("/notifications/read-all", params={"user_id": user["id"]})
    assert marked.json() == {"marked": 2}
    assert api.get("/notifications/unread-count", params={"user_id": user["id"]}).json() == {"unread": 0}
    other = make_user(stack, unique)
    assert api.post(f"/notifications/{first[0]['id']}/read",
                    params={"user_id": other["id"]}).status_code == 404


# --- preferences, channels, language ----------------------------------------------------

def test_preferences_pick_sms_and_telegram_in_italian(api, stack, ch, unique):
    user = make_user(stack, unique, language="it", phone="+393331234567",
                     telegram_chat_id="4242", name="Giulia")
    prefs = api.put("/notification-preferences", params={"user_id": user["id"]},
                    json={"channels": {"task_assigned": ["sms", "telegram"]}})
    assert prefs.status_code == 200, prefs.text
    assert prefs.json()["channels"]["task_assigned"] == ["sms", "telegram"]
    assert prefs.json()["channels"]["deal_won"] == ["inapp", "email"]  # defaults kept
    got = api.get("/notification-preferences", params={"user_id": user["id"]}).json()
    assert got == prefs.json()
    body = publish(stack, "tasks", "task_assigned",
                   {"task": task("Chiamare Rossi"), "assignee_id": user["id"]})
    found = wait_final(stack, body["event_id"], 2)
    assert {d["channel"]: d["status"] for d in found} == {"sms": "delivered", "telegram": "delivered"}
    sms = [r for r in ch.http.to("/sms") if b"+393331234567" in r["body"]]
    assert len(sms) == 1
    assert json.loads(sms[0]["body"]) == {"to": "+393331234567",
                                          "text": "Nuova attività per te: Chiamare Rossi"}
    assert sms[0]["headers"]["Authorization"].startswith("Basic ")
    tg = [r for r in ch.http.to(ch.telegram_path()) if json.loads(r["body"])["chat_id"] == "4242"]
    assert len(tg) == 1 and json.loads(tg[0]["body"])["text"].startswith("Ciao Giulia,")
    assert not [n for n in inbox(api, user["id"]) if n["event_id"] == body["event_id"]]
    assert ch.smtp.to(user["email"]) == []


def test_bad_preferences_are_422_and_change_nothing(api, stack, ch, unique):
    user = make_user(stack, unique)
    before = api.get("/notification-preferences", params={"user_id": user["id"]}).json()
    for bad in ({"channels": {"task_assigned": ["pigeon"]}}, {"channels": {"no_such": ["email"]}},
                {"quiet_hours": {"start": "25:00", "end": "07:00"}},
                {"timezone": "Mars/Olympus"}, {"language": "xx"}, {"task_reminders": [-5]}):
        response = api.put("/notification-preferences", params={"user_id": user["id"]}, json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    assert api.get("/notification-preferences", params={"user_id": user["id"]}).json() == before


def test_silenced_event_sends_nothing(api, stack, ch, unique):
    user = make_user(stack, unique)
    api.put("/notification-preferences", params={"user_id": user["id"]},
            json={"channels": {"deal_assigned": []}})
    body = publish(stack, "deals", "deal_assigned",
                   {"deal": {"id": "d1", "title": "X"}, "owner_id": user["id"]})
    probe = publish(stack, "deals", "deal_assigned",
                    {"deal": {"id": "d2", "title": "Y"}, "owner_id": make_user(stack, unique)["id"]})
    wait_final(stack, probe["event_id"], 1)
    assert deliveries(stack, body["event_id"]) == [] and inbox(api, user["id"]) == []


def test_quiet_hours_hold_non_urgent_messages_until_the_window_ends(api, stack, ch, unique):
    manager = make_user(stack, unique, role="manager", timezone="Europe/Rome")
    agent = make_user(stack, unique, manager_id=manager["id"], timezone="Europe/Rome")
    for person in (agent, manager):
        r = api.put("/notification-preferences", params={"user_id": person["id"]},
                    json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
        assert r.status_code == 200, r.text
    # 23:30 in Rome (UTC+1 in winter): inside the window, which ends 06:00Z next morning
    stack.rpc.call("notifications", "set_test_clock", "2027-01-14T22:30:00Z")
    try:
        assigned = publish(stack, "tasks", "task_assigned", {"task": task(), "assignee_id": agent["id"]})
        escalated = publish(stack, "tasks", "task_escalated",
                            {"task": task(), "assignee_id": agent["id"], "manager_id": manager["id"]})
        assert wait_inbox(api, agent["id"], assigned["event_id"])  # the inbox is silent: at once
        [urgent] = wait_final(stack, escalated["event_id"], 1)
        assert urgent["status"] == "delivered"  # urgent: not held
        [held] = deliveries(stack, assigned["event_id"])
        assert held["status"] == "pending" and held["attempts"] == 0
        assert held["next_attempt_at"] == "2027-01-15T06:00:00Z"
        sender_caught_up(stack, unique)
        assert deliveries(stack, assigned["event_id"])[0]["status"] == "pending"
        assert ch.smtp.to(agent["email"]) == []
        stack.rpc.call("notifications", "set_test_clock", "2027-01-15T06:00:01Z")
        [sent] = wait_final(stack, assigned["event_id"], 1)
        assert sent["status"] == "delivered"
        assert len(ch.smtp.wait_for(agent["email"])) == 1
    finally:
        stack.rpc.call("notifications", "set_test_clock", None)


# --- failures, retries, channels down ---------------------------------------------------

def test_permanent_failures_end_failed_at_once_with_the_reason(api, stack, ch, unique):
    user = make_user(stack, unique, email=f"reject-{unique}@crm.test", phone=None)
    api.put("/notification-preferences", params={"user_id": user["id"]},
            json={"channels": {"task_overdue": ["email", "sms"]}})
    body = publish(stack, "tasks", "task_overdue", {"task": task(), "assignee_id": user["id"]})
    found = {d["channel"]: d for d in wait_final(stack, body["event_id"], 2)}
    assert found["email"]["status"] == "failed" and found["email"]["attempts"] == 1
    assert "550" in found["email"]["last_error"] or "refused" in found["email"]["last_error"]
    assert found["sms"]["status"] == "failed" and "phone" in found["sms"]["last_error"]


def test_provider_4xx_fails_at_once_5xx_retries_then_fails(api, stack, ch, unique):
    four = make_user(stack, unique, phone="+393330000001")
    five = make_user(stack, unique, phone="+393330000002")
    for person in (four, five):
        api.put("/notification-preferences", params={"user_id": person["id"]},
                json={"channels": {"import_finished": ["sms"]}})
    ch.http.plan("/sms", [400])
    first = publish(stack, "contacts", "import_finished",
                    {"import_id": "i", "started_by": four["id"], "counts": {}})
    [d4] = wait_final(stack, first["event_id"], 1)
    assert d4["status"] == "failed" and d4["attempts"] == 1 and "400" in d4["last_error"]
    ch.http.plan("/sms", [503, 503, 503])
    second = publish(stack, "contacts", "import_finished",
                     {"import_id": "i", "started_by": five["id"], "counts": {}})
    [d5] = wait_final(stack, second["event_id"], 1)
    assert d5["status"] == "failed" and d5["attempts"] == 3 and "503" in d5["last_error"]


def test_a_channel_down_does_not_block_the_others(api, stack, ch, unique):
    user = make_user(stack, unique, phone="+393330000003", telegram_chat_id="77")
    api.put("/notification-preferences", params={"user_id": user["id"]},
            json={"channels": {"task_overdue": ["telegram", "email", "sms"]}})
    ch.http.delay(ch.telegram_path(), 3)  # Telegram hangs past the 1 s send timeout
    try:
        started = time.time()
        body = publish(stack, "tasks", "task_overdue", {"task": task(), "assignee_id": user["id"]})
        assert ch.smtp.wait_for(user["email"], timeout=10)
        email_after = time.time() - started
        found = {d["channel"]: d for d in wait_final(stack, body["event_id"], 3, timeout=40)}
    finally:
        ch.http.delay(ch.telegram_path(), 0)
    assert found["email"]["status"] == "delivered" and found["sms"]["status"] == "delivered"
    assert found["telegram"]["status"] == "failed" and found["telegram"]["attempts"] == 3
    assert "timed out" in found["telegram"]["last_error"]
    assert email_after < 5


def test_delivered_and_failed_are_announced(api, stack, ch, unique, record_events):
    recorder = record_events("notifications")
    ok = make_user(stack, unique)
    bad = make_user(stack, unique, email=f"reject-{unique}@crm.test")
    first = publish(stack, "tasks", "task_overdue", {"task": task(), "assignee_id": ok["id"]})
    second = publish(stack, "tasks", "task_overdue", {"task": task(), "assignee_id": bad["id"]})
    delivered = recorder.wait_for(lambda e: e["type"] == "notification_delivered"
                                  and e["data"]["event_id"] == first["event_id"])
    failed = recorder.wait_for(lambda e: e["type"] == "notification_failed"
                               and e["data"]["event_id"] == second["event_id"])
    assert delivered[0]["data"]["channel"] == "email"
    assert delivered[0]["data"]["recipient"] == f"user:{ok['id']}"
    assert failed[0]["data"]["reason"]


# --- birthdays and contacts -------------------------------------------------------------

def test_birthday_list_to_owners_and_no_greeting_from_here(api, stack, ch, unique):
    """The owner gets the day's list; the clients are greeted by automation's birthday rule
    (tests/test_automation.py), never by this service, whatever the old preference says."""
    owner = make_user(stack, unique, name="Olivia")
    api.put("/notification-preferences", params={"user_id": owner["id"]},
            json={"birthday_greetings": True})
    made = {}
    for name, dnc in (("Happy", False), ("Private", True)):
        response = api.post("/contacts", params={"force": "true"}, json={
            "first_name": name, "last_name": f"B{unique}", "owner_id": owner["id"],
            "emails": [f"{name.lower()}.{unique}@example.com"], "birthday": "1985-03-17",
            "do_not_contact": dnc})
        assert response.status_code == 201, response.text
        made[name] = response.json()
    result = stack.rpc.call("notifications", "run_birthdays", "2027-03-17")
    assert result["contacts"] >= 2
    [listing] = wait_inbox(api, owner["id"], "birthdays:2027-03-17")
    assert f"Happy B{unique}" in listing["body"] and f"Private B{unique}" in listing["body"]
    found = deliveries(stack, "birthdays:2027-03-17")
    assert not [d for d in found if d["recipient"].startswith("contact:")]
    # a second run the same day adds nothing (it answers once its writes are done)
    again = stack.rpc.call("notifications", "run_birthdays", "2027-03-17")
    assert (again["inbox"], again["deliveries"]) == (0, 0)
    assert len([n for n in inbox(api, owner["id"]) if n["event_id"] == "birthdays:2027-03-17"]) == 1
    assert owner["id"] in stack.rpc.call("notifications", "birthday_greeting_owners")
    assert ch.smtp.to(f"happy.{unique}@example.com") == []


# --- with the gateway's real users and sign-in -------------------------------------------

def test_signed_in_user_reads_own_inbox_only_admins_manage_webhooks(api, stack, ch, make_user):
    agent = make_user("agent", language="it")  # the gateway announces it (user_upserted)
    user_id = agent.user["id"]
    users = stack.db("notifications")["users"]
    assert wait(lambda: users.find_one({"_id": user_id})), "the gateway's user_upserted"
    body = publish(stack, "deals", "deal_assigned",
                   {"deal": {"id": "d1", "title": "Mine"}, "owner_id": user_id})
    found = wait(lambda: [n for n in agent.get("/notifications").json()["items"]
                          if n["event_id"] == body["event_id"]])
    assert found and found[0]["title"] == "Nuova trattativa per te: Mine"
    assert agent.get("/notifications/unread-count").json()["unread"] >= 1
    assert agent.post("/notifications/read-all").status_code == 200
    other = make_user("agent")
    assert agent.get("/notifications", params={"user_id": other.user["id"]}).status_code == 403
    assert other.post(f"/notifications/{found[0]['id']}/read").status_code == 404
    assert agent.get("/webhooks").status_code == 403
    assert agent.post("/webhooks", json={"url": ch.http.base_url + "/x",
                                         "events": ["deal_won"]}).status_code == 403
    prefs = agent.put("/notification-preferences", json={"language": "en"})
    assert prefs.status_code == 200 and prefs.json()["user_id"] == user_id


# --- scheduled report digests -------------------------------------------------------------

def test_a_daily_digest_carries_the_reports_the_user_may_see_once_per_period(api, stack, ch,
                                                                           make_user):
    from datetime import datetime, timedelta, timezone
    from crm_common.timeutil import to_iso
    agent, other = make_user("agent"), make_user("agent")
    users = stack.db("notifications")["users"]
    for client in (agent, other):
        assert wait(lambda: users.find_one({"_id": client.user["id"]})), "user copy"
    now = datetime.now(timezone.utc)
    due = agent.post("/tasks", json={"title": "Digest call", "kind": "call",
                                     "due_at": to_iso(now - timedelta(hours=1))})
    assert due.status_code == 201, due.text
    assert agent.post(f"/tasks/{due.json()['id']}/complete", json={}).status_code == 200
    # sent at the next hour: the day before it holds the task
    at = (now + timedelta(hours=1)).replace(minute=5)
    for client in (agent, other):
        answer = client.put("/notification-preferences", json={
            "timezone": "UTC", "digest": {"frequency": "daily", "hour": at.hour,
                                          "reports": ["sales", "tasks", "calls", "funnel"]}})
        assert answer.status_code == 200, answer.text
        assert answer.json()["digest"]["frequency"] == "daily"
    sent = stack.rpc.call("notifications", "run_digests", to_iso(at), agent.user["id"])
    assert sent == [agent.user["id"]]
    [mail] = ch.smtp.wait_for(agent.user["email"])
    assert mail["message"]["Subject"].startswith("Your daily digest")
    body = mail["message"].get_body(("plain",)).get_content()
    assert "Tasks due in the period, by assignee:" in body
    assert f"{agent.user['name']}: 1 done, 0 open, 0 overdue" in body
    assert "Calls by agent:" in body and "Won deals by owner:" in body
    assert "Funnel by pipeline" in body
    # multipart: the HTML part holds the same reports as tables, the funnel per pipeline
    assert mail["message"].get_content_type() == "multipart/alternative"
    html = mail["message"].get_body(("html",)).get_content()
    assert "<table" in html and "<h4>Funnel by pipeline</h4>" in html
    assert f"<td>{agent.user['name']}</td>" in html
    # once per period, whatever the timer's ticks
    assert stack.rpc.call("notifications", "run_digests", to_iso(at), agent.user["id"]) == []
    # the other agent's digest holds none of it (their own visibility)
    assert stack.rpc.call("notifications", "run_digests", to_iso(at), other.user["id"]) == [
        other.user["id"]]
    [mail] = ch.smtp.wait_for(other.user["email"])
    body = mail["message"].get_body(("plain",)).get_content()
    assert "Digest call" not in body and f"{agent.user['name']}:" not in body
    # not due outside its hours (6 hours after it at most)
    late = to_iso(at + timedelta(hours=7))
    assert stack.rpc.call("notifications", "run_digests", late, agent.user["id"]) == []
    # asked for now: one more, at once
    asked = agent.post("/notification-preferences/digest/send")
    assert asked.status_code == 200, asked.text
    assert asked.json()["channels"] == ["email"] and "tasks" in asked.json()["reports"]
    assert len(ch.smtp.wait_for(agent.user["email"], count=2)) == 2


def test_bad_digest_settings_are_422_and_change_nothing(api, stack, ch, unique):
    user = make_user(stack, unique)
    for digest in ({"frequency": "hourly"}, {"frequency": "daily", "hour": 24},
                   {"frequency": "weekly", "weekday": 7}, {"reports": ["gossip"]},
                   {"reports": []}):
        answer = api.put("/notification-preferences", params={"user_id": user["id"]},
                         json={"digest": digest})
        assert answer.status_code == 422, (digest, answer.text)
    prefs = api.get("/notification-preferences", params={"user_id": user["id"]}).json()
    assert prefs["digest"]["frequency"] == "off"


def test_when_a_digest_is_due():
    from datetime import datetime, timezone
    from services.notifications.digests import due_period
    at = datetime(2026, 12, 7, 7, 30, tzinfo=timezone.utc)   # a Monday, 08:30 in Rome
    daily = {"frequency": "daily", "hour": 8}
    key, start, end = due_period(at, daily, "Europe/Rome")
    assert key == "daily:2026-12-07" and (start.day, end.day, end.hour) == (6, 7, 8)
    assert due_period(at, daily, "UTC") is None   # 23.5 hours after 08:00 UTC
    assert due_period(at, {"frequency": "weekly", "hour": 8, "weekday": 0}, "Europe/Rome")[0] \
        == "weekly:2026-12-07"
    assert due_period(at, {"frequency": "weekly", "hour": 8, "weekday": 1}, "Europe/Rome") is None
    assert due_period(at, {"frequency": "off", "hour": 8}, "UTC") is None
