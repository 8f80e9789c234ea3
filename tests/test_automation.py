"""Automation rules and campaigns through the real stack, with TWO automation processes (each
running its timer and taking events from the same queues): every run must happen once.
Time-based triggers are driven by the test clock (CRM_TEST_CLOCK=1: an offset kept in the
automation database, seen by both replicas)."""
import json
import os
import signal
import time
from datetime import datetime, timedelta, timezone

import pytest

from crm_common import cursors
from crm_common.timeutil import parse_iso, to_iso, utcnow
from tests.fake_receivers import HttpRecorder
from tests.test_tasks import announce_user

ENV = {"CRM_TEST_CLOCK": 1, "CRM_AUTOMATION_TICK_SECONDS": 0.3,
       "CRM_AUTOMATION_RETRY_BACKOFF_S": 0.2, "CRM_AUTOMATION_ACTION_MAX_ATTEMPTS": 2,
       "CRM_WEBHOOK_ALLOW_LOOPBACK": 1, "CRM_AUTOMATION_LOOP_LIMIT": 5,
       "CRM_AUTOMATION_LEASE_S": 8}
DAY = 24 * 3600


def wait_until(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


@pytest.fixture(scope="module")
def two_replicas(stack):
    """The session's automation process replaced by two with the test clock; restored after."""
    stack.stop_service("automation", 0)
    try:
        for replica in (0, 1):
            stack.start_service("automation", replica, **ENV)
        pids, deadline = set(), time.time() + 180
        while len(pids) < 2:  # both answer (RabbitMQ round-robins the RPC queue)
            assert time.time() < deadline, "two automation replicas did not come up"
            for replica in (0, 1):
                if stack.processes[f"automation-{replica}"].poll() is not None:
                    stack.start_service("automation", replica, **ENV)
            try:
                info = stack.rpc.call("automation", "replica_info", timeout=2)
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
                continue
            if info["test_clock"]:
                pids.add(info["pid"])
        yield stack
    finally:
        stack.stop_service("automation", 1)
        stack.stop_service("automation", 0)
        stack.start_service("automation", 0)
        stack.wait_service("automation")


def make_pipeline(api, unique, *names):
    stages = [{"name": n, "kind": "open"} for n in names]
    stages += [{"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]
    made = api.post("/pipelines", json={"name": f"P {unique}", "stages": stages})
    assert made.status_code == 201, made.text
    return made.json()


def make_rule(api, **fields):
    made = api.post("/automation/rules", json={"name": "rule", "enabled": True, **fields})
    assert made.status_code == 201, made.text
    return made.json()


def runs_of(api, rule_id):
    return api.get(f"/automation/rules/{rule_id}/runs", params={"limit": 200}).json()["items"]


def tasks_of(api, **params):
    return api.get("/tasks", params={"limit": 100, **params}).json()["items"]


def test_deal_enters_stage_creates_task_once(two_replicas, api, stack, unique):
    stack = two_replicas
    owner = announce_user(stack, f"owner-{unique}")
    accountant = announce_user(stack, f"acct-{unique}")
    hooks = HttpRecorder().start()
    try:
        pipeline = make_pipeline(api, unique, "New", "Payment")
        payment = pipeline["stages"][1]["id"]
        rule = make_rule(api, name="Payment -> accountant", trigger={
            "type": "event", "event": "deals.deal_stage_changed"},
            conditions={"all": [{"field": "to_stage_id", "op": "eq", "value": payment},
                                {"field": "deal.amount", "op": "gte", "value": 1000}]},
            actions=[{"type": "create_task", "title": "Invoice for {{ deal.title }}",
                      "assignee_id": accountant, "kind": "email", "due_in_minutes": 60},
                     {"type": "notify_user", "message": "{{ deal.title }} is in payment"},
                     {"type": "webhook", "url": f"{hooks.base_url}/hook", "secret": "s3"}])
        big = api.post("/deals", json={"title": f"Big {unique}", "pipeline_id": pipeline["id"],
                                       "owner_id": owner, "amount": 5000, "currency": "EUR"}).json()
        small = api.post("/deals", json={"title": f"Small {unique}", "pipeline_id": pipeline["id"],
                                         "owner_id": owner, "amount": 10, "currency": "EUR"}).json()
        for deal in (big, small):
            moved = api.post(f"/deals/{deal['id']}/move", json={"stage_id": payment})
            assert moved.status_code == 200, moved.text

        tasks = wait_until(lambda: tasks_of(api, deal_id=big["id"]))
        assert [t["title"] for t in tasks] == [f"Invoice for Big {unique}"]
        assert tasks[0]["assignee_id"] == accountant and tasks[0]["kind"] == "email"
        runs = wait_until(lambda: [r for r in runs_of(api, rule["id"])
                                   if r["state"] == "done" and r["record_id"] == big["id"]])
        assert [a["status"] for a in runs[0]["actions"]] == ["done", "done", "done"]
        # notify_user: the deal's owner finds it in their inbox (notifications)
        inbox = stack.db("notifications")["inbox"]
        assert wait_until(lambda: inbox.find_one({"user_id": owner}))
        hook = hooks.wait_for("/hook")
        assert hook and hook[0]["headers"]["Idempotency-Key"] == f"{runs[0]['id']}:2"
        assert hook[0]["headers"]["X-CRM-Signature"].startswith("sha256=")
        # the small deal: logged with the condition that failed, nothing done
        skipped = wait_until(lambda: [r for r in runs_of(api, rule["id"])
                                      if r["record_id"] == small["id"]])
        assert skipped[0]["state"] == "skipped" and "deal.amount gte 1000" in skipped[0]["reason"]
        assert tasks_of(api, deal_id=small["id"]) == []
        per_record = api.get("/automation/runs", params={"record_type": "deal",
                                                         "record_id": big["id"]}).json()["items"]
        assert [r["id"] for r in per_record] == [runs[0]["id"]]

        # the same event delivered again (to either replica): nothing more happens
        batch = stack.db("automation")["events"].find_one(
            {"types": "deals.deal_stage_changed", "events.data.deal_id": big["id"]})
        event = next(e for e in batch["events"] if e["type_key"] == "deals.deal_stage_changed"
                     and e["data"].get("deal_id") == big["id"])
        from crm_common.messaging.publish import publish_event
        for _ in range(3):
            publish_event(stack.amqp_uri, "deals", "deal_stage_changed", event["data"],
                          event_id=event["_id"])
        time.sleep(2)
        assert len(tasks_of(api, deal_id=big["id"])) == 1
        assert len(hooks.to("/hook")) == 1
        assert len([r for r in runs_of(api, rule["id"]) if r["record_id"] == big["id"]]) == 1
    finally:
        hooks.stop()


def test_no_contact_for_30_days_creates_task(two_replicas, api, stack, unique):
    stack = two_replicas
    owner = announce_user(stack, f"owner-{unique}")
    rule = make_rule(api, name="Quiet VIP", trigger={"type": "no_contact", "days": 30},
                     conditions={"field": "contact.tags", "op": "contains", "value": f"vip{unique}"},
                     actions=[{"type": "create_task", "title": "Call {{ contact.first_name }}",
                               "kind": "call", "assignee_id": owner}])
    vip = api.post("/contacts", json={"first_name": "Vera", "last_name": unique,
                                      "tags": [f"vip{unique}"]}).json()
    plain = api.post("/contacts", json={"first_name": "Paul", "last_name": unique}).json()
    records = stack.db("automation")["records"]
    assert wait_until(lambda: records.count_documents(
        {"_id": {"$in": [f"contact:{vip['id']}", f"contact:{plain['id']}"]}}) == 2)
    stack.rpc.call("automation", "advance_clock", 20 * DAY)
    time.sleep(1.5)  # ticks of both replicas: not yet 30 days
    assert tasks_of(api, contact_id=vip["id"]) == []

    stack.rpc.call("automation", "advance_clock", 11 * DAY)
    tasks = wait_until(lambda: tasks_of(api, contact_id=vip["id"]))
    assert [t["title"] for t in tasks] == ["Call Vera"] and tasks[0]["assignee_id"] == owner
    skipped = wait_until(lambda: [r for r in runs_of(api, rule["id"])
                                  if r["record_id"] == plain["id"]])
    assert skipped[0]["state"] == "skipped" and "contact.tags contains" in skipped[0]["reason"]
    time.sleep(1.5)  # more ticks: still one
    assert len(tasks_of(api, contact_id=vip["id"])) == 1


def test_a_loop_stops_at_the_limit(two_replicas, api, unique):
    pipeline = make_pipeline(api, unique, "New", "A", "B")
    new, a, b = (s["id"] for s in pipeline["stages"][:3])
    ping = make_rule(api, name="A -> B", trigger={"type": "event", "event": "deals.deal_stage_changed"},
                     conditions={"field": "to_stage_id", "op": "eq", "value": a},
                     actions=[{"type": "move_deal", "stage_id": b}])
    pong = make_rule(api, name="B -> A", trigger={"type": "event", "event": "deals.deal_stage_changed"},
                     conditions={"field": "to_stage_id", "op": "eq", "value": b},
                     actions=[{"type": "move_deal", "stage_id": a}])
    deal = api.post("/deals", json={"title": f"Loop {unique}", "pipeline_id": pipeline["id"],
                                    "amount": 1, "currency": "EUR"}).json()
    assert api.post(f"/deals/{deal['id']}/move", json={"stage_id": a}).status_code == 200

    def runs():
        return [r for rule in (ping, pong) for r in runs_of(api, rule["id"])
                if r["record_id"] == deal["id"]]

    stopped = wait_until(lambda: [r for r in runs() if r["state"] == "stopped"])
    assert stopped and "loop limit" in stopped[0]["reason"] and stopped[0]["depth"] == 5
    time.sleep(1.5)
    done = [r for r in runs() if r["state"] == "done"]
    assert sorted(r["depth"] for r in done) == [0, 1, 2, 3, 4]
    # disabled: it stops for good
    assert api.patch(f"/automation/rules/{ping['id']}", json={"enabled": False}).json()["enabled"] is False


def test_dry_run_lists_the_records_it_would_have_hit(two_replicas, api, stack, unique):
    # the window is the last 30 days of the (test) clock: back to the real time
    stack.rpc.call("automation", "set_clock", to_iso(utcnow()))
    pipeline = make_pipeline(api, unique, "New")
    big = api.post("/deals", json={"title": f"Big {unique}", "pipeline_id": pipeline["id"],
                                   "amount": 90000, "currency": "EUR"}).json()
    small = api.post("/deals", json={"title": f"Small {unique}", "pipeline_id": pipeline["id"],
                                     "amount": 5, "currency": "EUR"}).json()
    rule = make_rule(api, name="Big web deals", enabled=False,
                     trigger={"type": "event", "event": "deals.deal_created"},
                     conditions={"all": [{"field": "deal.title", "op": "contains", "value": unique},
                                         {"field": "deal.amount", "op": "gt", "value": 1000}]},
                     actions=[{"type": "notify_user", "message": "Big deal {{ deal.title }}"}])

    def hits():
        answer = api.post(f"/automation/rules/{rule['id']}/dry-run", json={"days": 30})
        assert answer.status_code == 200, answer.text
        return {i["record_id"]: i for i in answer.json()["items"]
                if i["record_id"] in (big["id"], small["id"])}

    assert "id" in big and "id" in small, (big, small)
    found = wait_until(lambda: len(hits()) == 2 and hits())
    assert found[big["id"]]["would_fire"] is True
    assert found[small["id"]]["would_fire"] is False
    assert "deal.amount gt 1000" in found[small["id"]]["reason"]
    assert runs_of(api, rule["id"]) == []  # a dry run does nothing


def test_bad_rules_are_refused_at_save(two_replicas, api, make_user, unique):
    before = len(api.get("/automation/rules", params={"limit": 500}).json()["items"])
    event = {"type": "event", "event": "deals.deal_stage_changed"}
    task = [{"type": "create_task", "title": "x"}]
    cases = {
        "unknown field": dict(trigger=event, actions=task,
                              conditions={"field": "deal.colour", "op": "eq", "value": "red"}),
        "unknown event": dict(trigger={"type": "event", "event": "deals.deal_exploded"}, actions=task),
        "template syntax": dict(trigger=event, actions=[{"type": "create_task", "title": "{{ deal.title"}]),
        "missing placeholder": dict(trigger=event, actions=[{"type": "create_task",
                                                             "title": "{{ deal.nope }}"}]),
        "ten years": dict(trigger=event, actions=task, delay={"minutes": 10 * 365 * 24 * 60}),
        "loop": dict(trigger=event, actions=[{"type": "move_deal", "stage_id": "s1"}]),
        "unknown action": dict(trigger=event, actions=[{"type": "launch_rocket"}]),
        "bad op": dict(trigger=event, actions=task, conditions={"field": "to_stage_id", "op": "like"}),
    }
    for name, body in cases.items():
        answer = api.post("/automation/rules", json={"name": name, **body})
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["error"]["details"], name
    assert "deal.colour" in str(api.post("/automation/rules", json={"name": "x", **cases["unknown field"]}).json())
    agent = make_user("agent")
    assert agent.post("/automation/rules", json={"name": "a", "trigger": event, "actions": task}).status_code == 403
    manager = make_user("manager", team=f"team-{unique}")
    mine = manager.post("/automation/rules", json={"name": "m", "trigger": event, "actions": task})
    assert mine.status_code == 201 and mine.json()["team"] == f"team-{unique}"
    assert [r["id"] for r in manager.get("/automation/rules").json()["items"]] == [mine.json()["id"]]
    after = len(api.get("/automation/rules", params={"limit": 500}).json()["items"])
    assert after == before + 1  # only the manager's rule was stored
    triggers = api.get("/automation/triggers").json()["items"]
    stage_changed = {t["event"]: t for t in triggers}["deals.deal_stage_changed"]
    assert "deal.amount" in stage_changed["fields"]
    assert stage_changed["types"]["deal.amount"] == "number" and stage_changed["types"]["deal.title"] == "text"


def test_client_message_without_conversations_is_retried_then_failed(two_replicas, api, stack,
                                                                     unique):
    """conversations stopped: the action is retried, then the run fails, logged; the engine
    goes on. conversations is started again for the tests that follow."""
    rule = make_rule(api, name="Welcome", trigger={"type": "event", "event": "contacts.contact_created"},
                     conditions={"field": "contact.last_name", "op": "eq", "value": f"W{unique}"},
                     actions=[{"type": "send_message", "channel": "email",
                               "subject": "Welcome", "body": "Hello {{ contact.first_name }}"},
                              {"type": "add_tag", "record": "contact", "tag": "welcomed"}])
    stack.stop_service("conversations", 0)
    try:
        contact = api.post("/contacts", json={"first_name": "Wanda", "last_name": f"W{unique}",
                                              "emails": [f"w{unique}@example.com"]}).json()
        failed = wait_until(lambda: [r for r in runs_of(api, rule["id"])
                                     if r["record_id"] == contact["id"] and r["state"] == "failed"])
    finally:
        stack.start_service("conversations", 0)
        stack.wait_service("conversations")
    assert failed, runs_of(api, rule["id"])
    action = failed[0]["actions"][0]
    assert action["status"] == "failed" and action["attempts"] == 2
    # its queue is still there (no answer in time) or gone (503 at once)
    assert any(word in failed[0]["reason"] for word in ("Timeout", "Unavailable")), failed[0]
    assert len(failed[0]["actions"]) == 1  # later actions are not run after a failure
    assert "welcomed" not in api.get(f"/contacts/{contact['id']}").json()["tags"]


def test_order_received_sms_goes_once_from_a_web_form_deal(two_replicas, api, stack, unique):
    """A web form's lead gets its deal; the rule on deals.deal_created texts the client
    through conversations' SMS gateway exactly once (two replicas); a do_not_contact
    client gets nothing and the run logs the action skipped with the reason."""
    from tests.test_leads import create_form, request_of, submit
    gateway = HttpRecorder().start()
    sms = api.post("/channels", json={"kind": "sms", "name": f"sms {unique}",
                                      "url": f"{gateway.base_url}/sms",
                                      "token": "smstoken", "from_number": "+15550001"})
    assert sms.status_code == 201, sms.text
    try:
        pipeline = make_pipeline(api, unique, "Order")
        rule = make_rule(api, name="Order received", trigger={
            "type": "event", "event": "deals.deal_created"},
            conditions={"field": "deal.pipeline_id", "op": "eq", "value": pipeline["id"]},
            actions=[{"type": "send_message", "channel": "sms",
                      "body": "Hello {{ contact.first_name }}, we received your order."}])
        form = create_form(api, pipeline_id=pipeline["id"], source="website")
        digits = f"{int(unique, 16) % 10 ** 7:07d}"
        quiet = api.post("/contacts", json={"first_name": "Quiet", "last_name": unique,
                                            "emails": [f"quiet-{unique}@example.com"],
                                            "phones": [f"+39348{digits}"],
                                            "do_not_contact": True}).json()
        requests_ = {}
        for name, email, phone in (("Olga", f"olga-{unique}@example.com", f"+39347{digits}"),
                                   ("Quiet", quiet["emails"][0]["email"], f"+39348{digits}")):
            answer = submit(stack, form["key"], json={"name": f"{name} {unique}", "email": email,
                                                      "phone": phone, "message": "2 boxes"})
            assert answer.status_code == 202, answer.text
            requests_[name] = request_of(api, answer.json()["id"])
            assert requests_[name] and requests_[name]["deal_created"] is True, requests_[name]
        assert requests_["Quiet"]["contact_id"] == quiet["id"]

        texted = gateway.wait_for("/sms", timeout=30)
        assert [json.loads(t["body"]) for t in texted] == [{
            "to": f"+39347{digits}", "text": "Hello Olga, we received your order.",
            "from": "+15550001"}]
        assert texted[0]["headers"]["Authorization"] == "Bearer smstoken"

        def run_of(name):
            found = [r for r in runs_of(api, rule["id"])
                     if r["record_id"] == requests_[name]["deal_id"] and r["state"] == "done"]
            return found[0] if found else None

        sent, skipped = wait_until(lambda: run_of("Olga") and run_of("Quiet") and
                                   (run_of("Olga"), run_of("Quiet")))
        assert sent["actions"][0]["status"] == "done"
        [action] = skipped["actions"]
        assert action["status"] == "skipped", skipped
        assert action["detail"]["reason"] == "do_not_contact"
        assert action["detail"]["contact_id"] == quiet["id"]
        # in the client's conversation, sent; nothing more reaches the gateway
        conversation = api.get("/conversations", params={
            "contact_id": requests_["Olga"]["contact_id"]}).json()["items"]
        assert conversation and "sms" in conversation[0]["channels"]
        time.sleep(2)
        assert len(gateway.to("/sms")) == 1
        assert len(runs_of(api, rule["id"])) == 2
    finally:
        # the first active SMS channel is the one used: later tests set up their own
        api.delete(f"/channels/{sms.json()['id']}")
        gateway.stop()


def test_segment_and_campaign_consent_and_unsubscribe(two_replicas, api, stack, monkeypatch, unique):
    tag = f"news{unique}"
    everyone = api.post("/segments", json={"name": "all", "filters": {}})
    assert everyone.status_code == 422
    assert api.post("/segments", json={"name": "x", "filters": {"colour": "red"}}).status_code == 422
    people = [api.post("/contacts", json={"first_name": name, "last_name": unique, "tags": [tag],
                                          "emails": [f"{name}.{unique}@example.com"],
                                          "do_not_contact": name == "Dora"}).json()
              for name in ("Ann", "Bob", "Dora")]
    segment = api.post("/segments", json={"name": "News", "filters": {"tag": tag}})
    assert segment.status_code == 201, segment.text
    segment = segment.json()
    assert wait_until(lambda: api.get(f"/segments/{segment['id']}/count").json()["count"] == 3)

    bad = api.post("/campaigns", json={"name": "c", "segment_id": segment["id"], "channel": "email",
                                       "subject": "Hi", "body": "No link {{ contact.first_name }}"})
    assert bad.status_code == 422  # a marketing e-mail needs its unsubscribe link
    campaign = api.post("/campaigns", json={
        "name": f"Sale {unique}", "segment_id": segment["id"], "channel": "email",
        "subject": "Sale", "body": "Hi {{ contact.first_name }} {{ unsubscribe_url }}"}).json()
    # Bob unsubscribes (a link of an earlier mailing): no login, honoured at once
    monkeypatch.setattr(cursors, "_secret", stack.jwt_secret.encode())
    token = cursors.sign_token({"c": campaign["id"], "k": people[1]["id"], "ch": "email"})
    import requests
    answer = requests.get(f"{stack.base_url}/api/v1/u/{token}", timeout=10)
    assert answer.status_code == 200 and answer.json()["unsubscribed"] is True
    assert requests.get(f"{stack.base_url}/api/v1/u/{token}x", timeout=10).status_code == 400

    sent = api.post(f"/campaigns/{campaign['id']}/send", json={})
    assert sent.status_code == 200, sent.text
    assert api.post(f"/campaigns/{campaign['id']}/send", json={}).status_code == 409

    def finished():
        got = api.get(f"/campaigns/{campaign['id']}").json()
        return got if got["status"] == "sent" else None

    done = wait_until(finished, timeout=45)
    assert done, api.get(f"/campaigns/{campaign['id']}").json()
    counts = done["counts"]
    # Dora: do_not_contact; Bob: unsubscribed; Ann: no mailbox set up here -> failed
    assert counts["queued"] == 3 and counts["skipped"] == 2 and counts["failed"] == 1
    assert counts["delivered"] + counts["failed"] + counts["skipped"] == counts["queued"]
    assert counts["unsubscribed"] == 1
    sends = {s["contact_id"]: s for s in stack.db("automation")["sends"].find(
        {"campaign_id": campaign["id"]})}
    assert sends[people[2]["id"]]["detail"]["reason"] == "do_not_contact"
    assert sends[people[1]["id"]]["detail"]["reason"] == "unsubscribed"
    assert sends[people[0]["id"]]["detail"]["reason"] == "no_mailbox"

    # a lead from the campaign's link (its utm_campaign): the campaign is its lead source
    from tests.test_leads import create_form, request_of, submit
    source = done["source"]
    assert source == f"campaign:{campaign['id']}"
    form = create_form(api, pipeline_id=make_pipeline(api, unique, "New")["id"])
    answer = submit(stack, form["key"], json={"name": f"Eve {unique}", "utm_campaign": source,
                                              "email": f"eve.{unique}@example.com"})
    assert answer.status_code == 202, answer.text
    assert request_of(api, answer.json()["id"])["deal_created"] is True
    [row] = api.get("/reports/sources", params={"source": source, "period": "all"}).json()["rows"]
    assert (row["leads"], row["deals"]) == (1, 1)
    registered = api.get("/lead-sources", params={"limit": 500}).json()["items"]
    assert [s["description"] for s in registered if s["name"] == source] == [f"Campaign: Sale {unique}"]


def test_a_segment_of_words_is_counted_and_sent_from_the_search_index(two_replicas, api, unique):
    """Words in `q`: contacts' own list only looks up a phone or an email (its 503 for words),
    so a segment's count and recipients come from the search index, as the list's do."""
    word = f"Quill{unique}"
    for name in ("Ann", "Bob"):
        assert api.post("/contacts", json={"first_name": name, "last_name": word, "emails": [
            f"{name}.{unique}@example.com"]}).status_code == 201
    segment = api.post("/segments", json={"name": "Words", "filters": {"q": word}}).json()
    assert wait_until(lambda: api.get(f"/segments/{segment['id']}/count").json().get("count") == 2)
    campaign = api.post("/campaigns", json={
        "name": f"Words {unique}", "segment_id": segment["id"], "channel": "email",
        "subject": "Hi", "body": "Hi {{ contact.first_name }} {{ unsubscribe_url }}"}).json()
    assert api.post(f"/campaigns/{campaign['id']}/send", json={}).status_code == 200

    def finished():
        got = api.get(f"/campaigns/{campaign['id']}").json()
        return got if got["status"] == "sent" else None

    done = wait_until(finished, timeout=45)
    assert done and done["counts"]["queued"] == 2, api.get(f"/campaigns/{campaign['id']}").json()


def test_stage_rules_held_by_tasks_are_copied_once(two_replicas, api, stack, unique):
    """The rules the tasks service kept before they became automation rules are copied at
    start (here: one more, and the copy asked again), keeping their ids."""
    now = utcnow()
    stack.db("tasks")["task_rules"].insert_one({
        "_id": f"old-{unique}", "pipeline_id": f"p-{unique}", "stage_id": f"s-{unique}",
        "title": "Old rule", "kind": "call", "priority": "high", "due_in_minutes": 60,
        "reminders": [], "assignee_id": None, "active": True, "created_at": now,
        "updated_at": now})
    stack.db("automation")["meta"].delete_one({"_id": "flag:task_rules_migrated"})
    assert wait_until(lambda: api.get(f"/task-rules/old-{unique}").status_code == 200)
    copied = api.get(f"/task-rules/old-{unique}").json()
    assert (copied["title"], copied["kind"], copied["priority"], copied["stage_id"]) == \
        ("Old rule", "call", "high", f"s-{unique}")
    listed = api.get("/task-rules", params={"pipeline_id": f"p-{unique}"}).json()["items"]
    assert [r["id"] for r in listed] == [f"old-{unique}"]
    # an engine rule like any other, changed through its own API only
    assert api.get(f"/automation/rules/old-{unique}").json()["trigger"]["event"] == \
        "deals.deal_stage_changed"
    assert api.patch(f"/automation/rules/old-{unique}", json={"name": "x"}).status_code == 409


def test_a_delayed_run_is_canceled_when_its_condition_stops_holding(two_replicas, api, stack, unique):
    owner = announce_user(stack, f"owner-{unique}")
    pipeline = make_pipeline(api, unique, "New", "Proposal")
    new, proposal = pipeline["stages"][0]["id"], pipeline["stages"][1]["id"]
    rule = make_rule(api, name="Proposal still open after 2 hours",
                     trigger={"type": "event", "event": "deals.deal_stage_changed"},
                     conditions={"all": [{"field": "to_stage_id", "op": "eq", "value": proposal},
                                         {"field": "deal.stage_id", "op": "eq", "value": proposal}]},
                     delay={"minutes": 120},
                     actions=[{"type": "create_task", "title": "Chase {{ deal.title }}",
                               "assignee_id": owner}])
    stays, leaves = (api.post("/deals", json={"title": f"{name} {unique}", "owner_id": owner,
                                              "pipeline_id": pipeline["id"], "amount": 1,
                                              "currency": "EUR"}).json()
                     for name in ("Stays", "Leaves"))
    for deal in (stays, leaves):
        assert api.post(f"/deals/{deal['id']}/move", json={"stage_id": proposal}).status_code == 200

    def run_of(deal):
        found = [r for r in runs_of(api, rule["id"]) if r["record_id"] == deal["id"]]
        return found[0] if found else None

    assert wait_until(lambda: run_of(stays) and run_of(leaves))
    assert run_of(stays)["state"] == "scheduled" and run_of(stays)["due_at"]
    assert api.post(f"/deals/{leaves['id']}/move", json={"stage_id": new}).status_code == 200
    records = stack.db("automation")["records"]
    assert wait_until(lambda: (records.find_one({"_id": f"deal:{leaves['id']}"}) or {})
                      .get("record", {}).get("stage_id") == new)
    stack.rpc.call("automation", "advance_clock", 3 * 3600)
    assert wait_until(lambda: run_of(stays)["state"] == "done" and run_of(leaves)["state"] == "canceled")
    assert "deal.stage_id eq" in run_of(leaves)["reason"]
    assert [t["title"] for t in tasks_of(api, deal_id=stays["id"])] == [f"Chase Stays {unique}"]
    assert tasks_of(api, deal_id=leaves["id"]) == []


def test_round_robin_owner_tag_and_field(two_replicas, api, make_user, unique):
    first, second = make_user("agent"), make_user("agent")
    people = [first.user["id"], second.user["id"]]
    rule = make_rule(api, name="New leads", trigger={"type": "event", "event": "contacts.contact_created"},
                     conditions={"field": "contact.last_name", "op": "eq", "value": f"RR{unique}"},
                     actions=[{"type": "assign_owner", "record": "contact", "user_ids": people},
                              {"type": "add_tag", "record": "contact", "tag": "auto"},
                              {"type": "set_field", "record": "contact", "field": "position",
                               "value": "Lead from {{ contact.source or 'nowhere' }}"}])
    made = [api.post("/contacts", json={"first_name": n, "last_name": f"RR{unique}"}).json()
            for n in ("One", "Two")]

    def done():
        runs = [r for r in runs_of(api, rule["id"]) if r["state"] in ("done", "failed")]
        return runs if len(runs) == 2 else None

    runs = wait_until(done)
    assert runs and all(r["state"] == "done" for r in runs), runs
    contacts = [api.get(f"/contacts/{c['id']}").json() for c in made]
    assert sorted(c["owner_id"] for c in contacts) == sorted(people)  # one each, in turn
    assert all("auto" in c["tags"] and c["position"] == "Lead from nowhere" for c in contacts)


def test_days_in_stage_and_days_before_a_birthday(two_replicas, api, stack, unique):
    owner = announce_user(stack, f"owner-{unique}")
    today = parse_iso(stack.rpc.call("automation", "now")).date()
    soon = today + timedelta(days=3)
    birthday = api.post("/contacts", json={"first_name": "Bea", "last_name": unique, "owner_id": owner,
                                           "birthday": f"1990-{soon.month:02d}-{soon.day:02d}"})
    assert birthday.status_code == 201, birthday.text
    birthday = birthday.json()
    pipeline = make_pipeline(api, unique, "New")
    deal = api.post("/deals", json={"title": f"Idle {unique}", "pipeline_id": pipeline["id"],
                                    "owner_id": owner, "amount": 1, "currency": "EUR"}).json()
    records = stack.db("automation")["records"]
    assert wait_until(lambda: records.find_one({"_id": f"contact:{birthday['id']}"})
                      and records.find_one({"_id": f"deal:{deal['id']}"}))
    greet = make_rule(api, name="Birthday in 3 days", trigger={
        "type": "date_field", "record": "contact", "field": "birthday", "days": 3,
        "when": "before", "annual": True},
        conditions={"field": "contact.last_name", "op": "eq", "value": unique},
        actions=[{"type": "notify_user", "message": "{{ contact.first_name }}'s birthday is coming"}])
    idle = make_rule(api, name="A week in a stage", trigger={"type": "in_stage", "days": 7},
                     conditions={"field": "deal.pipeline_id", "op": "eq", "value": pipeline["id"]},
                     actions=[{"type": "notify_user", "message": "{{ deal.title }} is idle"}])
    fired = wait_until(lambda: [r for r in runs_of(api, greet["id"])
                                if r["state"] == "done" and r["record_id"] == birthday["id"]])
    assert len(fired) == 1
    assert fired[0]["occurrence"] == soon.isoformat()
    def of_deal():
        return [r for r in runs_of(api, idle["id"]) if r["record_id"] == deal["id"]]

    time.sleep(1)
    assert of_deal() == []  # not a week yet
    stack.rpc.call("automation", "advance_clock", 8 * DAY)
    fired = wait_until(lambda: [r for r in of_deal() if r["state"] == "done"])
    assert len(fired) == 1
    time.sleep(1)
    assert len(of_deal()) == 1
    assert [r["record_id"] for r in runs_of(api, greet["id"]) if r["state"] == "done"] == \
        [birthday["id"]]


def test_the_default_birthday_greeting_is_edited_enabled_and_sent(two_replicas, api, stack,
                                                                  unique):
    """Seeded at first start, disabled; the company makes it its own (here: by SMS, for its
    clients named `unique`), enables it, and the client is greeted on the day, once."""
    rule = api.get("/automation/rules/default-birthday-greeting").json()
    assert rule["enabled"] is False and rule["name"] == "Birthday greeting"
    assert rule["trigger"] == {"type": "date_field", "record": "contact", "field": "birthday",
                               "days": 0, "when": "before", "annual": True}
    [greeting] = rule["actions"]
    assert (greeting["type"], greeting["channel"]) == ("send_message", "email")
    today = parse_iso(stack.rpc.call("automation", "now")).date()
    phone = f"+39349{int(unique, 16) % 10 ** 7:07d}"
    gateway = HttpRecorder().start()
    sms = api.post("/channels", json={"kind": "sms", "name": f"sms {unique}",
                                      "url": f"{gateway.base_url}/sms", "token": "t"})
    assert sms.status_code == 201, sms.text
    try:
        contact = api.post("/contacts", json={
            "first_name": "Bruno", "last_name": unique, "phones": [phone],
            "birthday": f"1980-{today.month:02d}-{today.day:02d}"}).json()
        records = stack.db("automation")["records"]
        assert wait_until(lambda: records.find_one({"_id": f"contact:{contact['id']}"}))
        edited = api.patch("/automation/rules/default-birthday-greeting", json={
            "enabled": True,
            "conditions": {"field": "contact.last_name", "op": "eq", "value": unique},
            "actions": [{"type": "send_message", "channel": "sms", "body": greeting["body"]}]})
        assert edited.status_code == 200, edited.text
        texted = gateway.wait_for("/sms", timeout=30)
        assert [json.loads(t["body"])["text"] for t in texted] == [
            "Dear Bruno,\nall of us wish you a happy birthday!"]
        assert json.loads(texted[0]["body"])["to"] == phone
        time.sleep(1.5)  # more ticks of both replicas: still one
        assert len(gateway.to("/sms")) == 1
    finally:
        api.patch("/automation/rules/default-birthday-greeting", json={"enabled": False})
        api.delete(f"/channels/{sms.json()['id']}")
        gateway.stop()


def test_notifications_birthday_greetings_are_copied_into_the_rule_once(two_replicas, api, stack,
                                                                        unique):
    """One greeting mechanism: the owners who had notifications greet their contacts become
    the birthday rule's audience (once, whichever replica's timer does it)."""
    from tests.test_notifications import make_user
    owner = make_user(stack, unique)["id"]
    assert api.put("/notification-preferences", params={"user_id": owner},
                   json={"birthday_greetings": True}).status_code == 200
    before = api.get("/automation/rules/default-birthday-greeting").json()
    assert before["enabled"] is False
    meta = stack.db("automation")["meta"]
    meta.delete_one({"_id": "flag:birthday_greetings_copied"})  # as at the first start
    try:
        assert wait_until(lambda: meta.find_one({"_id": "flag:birthday_greetings_copied"}))
        rule = api.get("/automation/rules/default-birthday-greeting").json()
        assert rule["enabled"] is True and rule["version"] == before["version"] + 1
        audience = rule["conditions"] if not before["conditions"] else rule["conditions"]["all"][1]
        assert audience["field"] == "contact.owner_id" and audience["op"] == "in"
        assert owner in audience["value"]
        time.sleep(1)  # more ticks of both replicas: copied once
        assert api.get("/automation/rules/default-birthday-greeting").json()["version"] == \
            rule["version"]
    finally:
        api.patch("/automation/rules/default-birthday-greeting",
                  json={"enabled": False, "conditions": before["conditions"]})



def test_record_copies_keep_the_newest_whatever_the_order(stack, unique):
    """The records' copies (store.keep_intake, on the stack's database): a newer copy
    replaces the stored one (a time trigger's field it has no value for goes, out of its
    sparse index), an older one arriving late and the same one again change nothing but
    the later `quiet_since`, a touch moves only that; two replicas writing first copies
    of the same records at once leave each record's newest."""
    import threading
    from crm_common.config import get_settings
    from crm_common.mongo import joining
    from services.automation.store import AutomationStore

    at = lambda h: datetime(2026, 12, 1, h, tzinfo=timezone.utc)  # noqa: E731
    db = joining(stack.mongo[f"scratch_{unique}"])
    store = AutomationStore(db, get_settings())
    store.ensure_indexes()

    def copy(h, **fields):
        return {"kind": "contact", "record": {"id": "c1", "name": f"v{h}", "note": "$5"},
                "at": at(h), **fields}

    def stored():
        return db.records.find_one({"_id": "contact:c1"}, {"_id": 0})

    try:
        store.keep_intake(None, {"contact:c1": copy(5, quiet_since=at(1), date_keys=["d:1"],
                                                     stage_since=None)}, {})
        assert stored() == copy(5, quiet_since=at(1), date_keys=["d:1"])
        store.keep_intake(None, {"contact:c1": copy(3, quiet_since=at(4), date_keys=[])}, {})
        assert stored() == copy(5, quiet_since=at(4), date_keys=["d:1"])  # older: only the touch
        newer = copy(7, quiet_since=at(2), date_keys=[])
        for _ in range(2):  # the second time a duplicate
            store.keep_intake(None, {"contact:c1": newer}, {})
            assert stored() == copy(7, quiet_since=at(4))
        assert db.records.count_documents({"date_keys": "d:1"}) == 0
        store.keep_intake(None, {}, {"contact:c1": at(9), "contact:none": at(9)})
        assert stored() == copy(7, quiet_since=at(9))
        assert db.records.count_documents({}) == 1  # a touch alone makes no copy

        keys = [f"deal:race-{i}" for i in range(30)]
        start = threading.Barrier(2)

        def replica(h):
            start.wait()
            store.keep_intake(None, {k: {"kind": "deal", "record": {"id": k}, "at": at(h)}
                                     for k in keys}, {})

        threads = [threading.Thread(target=replica, args=(h,)) for h in (10, 11)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {d["_id"]: d["at"] for d in db.records.find({"_id": {"$in": keys}})} == \
            {k: at(11) for k in keys}
    finally:
        stack.mongo.drop_database(f"scratch_{unique}")


def process_with_connection(pids, local_port):
    """Which of these processes holds the TCP connection from 127.0.0.1:local_port (Linux
    /proc: the socket's inode, then whose file descriptor it is)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                    inodes.add(fields[9])
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


def test_a_replica_killed_mid_run_is_taken_over_and_the_run_completes_once(two_replicas, api,
                                                                          stack, unique):
    """Kept last: it kills one replica (the fixture's teardown restores the service). The
    replica running a rule dies inside its second action; once the run's lease ends the
    other replica's timer takes it over: the done action is not repeated, the interrupted
    one is sent again with the same key, the run ends done, once."""
    hooks = HttpRecorder().start()
    hooks.delay("/slow", 30)
    try:
        rule = make_rule(api, name=f"Killed {unique}", trigger={
            "type": "event", "event": "deals.deal_created"},
            conditions={"field": "deal.title", "op": "contains", "value": unique},
            actions=[{"type": "create_task", "title": "Call {{ deal.title }}"},
                     {"type": "webhook", "url": f"{hooks.base_url}/slow"}])
        deal = api.post("/deals", json={"title": f"Kill {unique}", "amount": 1,
                                        "currency": "EUR"}).json()
        [first] = hooks.wait_for("/slow", timeout=30)
        time.sleep(0.3)  # its handler has read the delay: the next answers come at once
        hooks.delay("/slow", 0)
        replicas = {stack.processes[f"automation-{r}"].pid for r in (0, 1)}
        holder = process_with_connection(replicas, first["client_port"])
        assert holder in replicas
        os.kill(holder, signal.SIGKILL)

        def done():
            runs = [r for r in runs_of(api, rule["id"]) if r["record_id"] == deal["id"]]
            return runs if runs and runs[0]["state"] == "done" else None

        runs = wait_until(done, timeout=60)
        assert runs and len(runs) == 1, runs_of(api, rule["id"])
        assert [a["status"] for a in runs[0]["actions"]] == ["done", "done"]
        again = hooks.to("/slow")
        assert len(again) == 2 and len({r["headers"]["Idempotency-Key"] for r in again}) == 1
        assert len(wait_until(lambda: tasks_of(api, deal_id=deal["id"]))) == 1
        time.sleep(1)
        assert len(tasks_of(api, deal_id=deal["id"])) == 1
    finally:
        hooks.stop()


def test_a_rule_on_call_started_gets_the_calls_after_it_is_saved(two_replicas, api, unique):
    """Call events no rule names are not routed to automation at all; saving a rule that
    names one binds its queue to it before the answer, so the next call reaches the rule
    (and is kept for its dry runs)."""
    rule = make_rule(api, name=f"Ringing {unique}",
                     trigger={"type": "event", "event": "telephony.call_started"},
                     actions=[{"type": "notify_user", "message": "Ringing {{ call.id }}"}])
    event = {"event_id": f"{unique}-r", "provider": "pbx1", "call_id": f"auto-{unique}",
             "direction": "inbound", "from": "+390212345678", "to": "+390298765432",
             "state": "ringing"}
    answer = api.post("/telephony/events", json=event)
    assert answer.status_code == 200, answer.text
    call_id = answer.json()["call"]["id"]
    runs = wait_until(lambda: [r for r in runs_of(api, rule["id"]) if r["record_id"] == call_id])
    assert len(runs) == 1 and runs[0]["record_type"] == "call", runs


def test_campaign_queues_ids_and_makes_sends_as_they_near():
    """50,000 recipients are queued as chunks of ids; each send is made (once, even when a
    tick is replayed) AHEAD_S before its time, and the campaign ends when all are done."""
    from types import SimpleNamespace
    from services.automation import campaigns as module

    class Store:
        def __init__(self):
            self.docs = {"segments": {"s": {"_id": "s", "filters": {"tag": "x"}}},
                         "campaigns": {"c": {"_id": "c", "segment_id": "s", "status": "queuing",
                                             "rate_per_minute": 600, "counts": {}}}}
            self.chunks, self.sends = {}, {}

        def get(self, collection, doc_id):
            return self.docs[collection].get(doc_id)

        def update(self, collection, doc_id, changes, expect=None):
            doc = self.docs[collection][doc_id]
            if any(doc.get(k) != v for k, v in (expect or {}).items()):
                return None
            for key, value in changes.items():
                if key.startswith("counts."):
                    doc["counts"][key[7:]] = value
                else:
                    doc[key] = value
            return dict(doc)

        def save_recipients(self, campaign_id, chunks):
            self.chunks.update(chunks)

        def recipient_chunks(self, campaign_id, numbers):
            return {n: self.chunks[n] for n in numbers}

        def insert_sends(self, docs):
            new = [d for d in docs if d["_id"] not in self.sends]
            self.sends.update({d["_id"]: d for d in new})
            return len(new)

    class Contacts:
        def export_ids(self, filters, cursor, limit):
            start = int(cursor or 0)
            ids = [f"k{i:05d}" for i in range(start, min(start + limit, 2500))]
            return {"ids": ids, "next_cursor": str(start + limit) if start + limit < 2500 else None}

    store = Store()
    settings = SimpleNamespace(campaign_rate_per_minute=600, tick_seconds=5)
    campaigns = module.Campaigns(store, None, None, settings, None, lambda *a: Contacts(),
                                 lambda *a: None)
    now = utcnow()
    assert campaigns._queue(store.get("campaigns", "c"), now) == 2500
    campaign = store.get("campaigns", "c")
    assert (campaign["status"], campaign["counts"]["queued"], len(store.chunks)) == \
        ("sending", 2500, 3)
    # 10 a second: the first 30 s (301 sends) made at once, due 0.1 s apart
    assert len(store.sends) == campaign["made"] == 301
    assert store.sends["c:k00300"]["wake_at"] == now + timedelta(seconds=30)
    later = now + timedelta(seconds=100)
    assert campaigns._make_sends(dict(campaign), later) == "some"
    # the same tick replayed (its "made" not saved before a crash): nothing made twice
    assert campaigns._make_sends(dict(campaign), later) == "some"
    assert len(store.sends) == store.get("campaigns", "c")["made"] == 1301
    assert campaigns._make_sends(store.get("campaigns", "c"), now + timedelta(hours=1)) == "all"
    assert sorted(s["contact_id"] for s in store.sends.values()) == \
        [f"k{i:05d}" for i in range(2500)]
