"""Tasks end to end: gateway (gunicorn) -> RabbitMQ -> tasks service -> SecantusDB, the
events it announces, and the automation it runs on other services' events (published here
the way telephony, deals and the gateway publish them)."""
import time
from datetime import datetime, timedelta, timezone

import pytest

from crm_common.messaging.publish import publish_event
from crm_common.timeutil import parse_iso, to_iso


def iso(dt):
    return to_iso(dt.replace(microsecond=0))


def now():
    return datetime.now(timezone.utc)


def wait_until(fetch, check, timeout=10):
    deadline = time.time() + timeout
    while True:
        value = fetch()
        if check(value) or time.time() > deadline:
            return value
        time.sleep(0.1)


def announce_user(stack, user_id, manager_id=None, active=True, timezone_name=None):
    """A gateway user (tests/stack.py add_user) announced as the gateway does; waits until
    tasks has its copy."""
    stack.add_user(user_id, active=active, manager_id=manager_id)
    publish_event(stack.amqp_uri, "gateway", "user_upserted", {"user": {
        "id": user_id, "email": f"{user_id}@example.com", "name": user_id, "role": "agent",
        "team": "t", "manager_id": manager_id, "active": active, "timezone": timezone_name}})
    users = stack.db("tasks")["users"]
    found = wait_until(lambda: users.find_one({"_id": user_id}),
                       lambda u: u is not None and u.get("active") == active)
    assert found, user_id
    return user_id


def make_task(api, **fields):
    response = api.post("/tasks", json={"title": "Follow up", **fields})
    assert response.status_code == 201, response.text
    return response.json()


def make_contact(api, unique):
    response = api.post("/contacts", json={"first_name": "Ada", "last_name": f"Task{unique}",
                                           "emails": [f"ada.{unique}@example.com"]})
    assert response.status_code == 201, response.text
    return response.json()


def test_create_get_update_list_and_assignment_events(api, stack, record_events, unique):
    recorder = record_events("tasks")
    alice = announce_user(stack, f"alice-{unique}")
    contact = make_contact(api, unique)
    due = now() + timedelta(days=2)
    task = make_task(api, kind="meeting", title="Demo", due_at=iso(due),
                     end_at=iso(due + timedelta(hours=1)), assignee_id=alice,
                     contact_id=contact["id"], reminders=[15, 60, 15], priority="high")
    assert task["status"] == "open" and task["reminders"] == [15, 60]
    assert task["due_at"] == iso(due) and task["end_at"] == iso(due + timedelta(hours=1))
    assert task["assignee_id"] == alice and task["overdue"] is False
    assert api.get(f"/tasks/{task['id']}").json() == task

    created = recorder.wait_for(lambda e: e["type"] == "task_created" and e["data"]["task"]["id"] == task["id"])
    assigned = recorder.wait_for(lambda e: e["type"] == "task_assigned" and e["data"]["task"]["id"] == task["id"])
    assert created and assigned and assigned[0]["data"]["assignee_id"] == alice

    bob = announce_user(stack, f"bob-{unique}")
    patched = api.patch(f"/tasks/{task['id']}", json={"assignee_id": bob, "title": "Demo v2"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["assignee_id"] == bob and patched.json()["title"] == "Demo v2"
    assert recorder.wait_for(lambda e: e["type"] == "task_assigned" and e["data"]["assignee_id"] == bob)

    other = make_task(api, title="Email", kind="email", assignee_id=bob, due_at=iso(due - timedelta(days=1)))
    undated = make_task(api, title="Someday", assignee_id=bob)
    listed = api.get("/tasks", params={"assignee_id": bob}).json()["items"]
    assert [t["id"] for t in listed] == [other["id"], task["id"], undated["id"]]
    pages, cursor = [], None
    while True:
        body = api.get("/tasks", params={"assignee_id": bob, "limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        pages.append([t["id"] for t in body["items"]])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == [[other["id"], task["id"]], [undated["id"]]]
    assert [t["id"] for t in api.get("/tasks", params={"assignee_id": bob, "kind": "email"}).json()["items"]] == [other["id"]]
    assert [t["id"] for t in api.get("/tasks", params={"contact_id": contact["id"]}).json()["items"]] == [task["id"]]
    window = api.get("/tasks", params={"assignee_id": bob, "due_after": iso(due - timedelta(hours=1)),
                                       "include_total": "true"}).json()
    assert [t["id"] for t in window["items"]] == [task["id"]] and window["total"] == 1
    newest = api.get("/tasks", params={"assignee_id": bob, "sort": "-created_at"}).json()["items"]
    assert newest[0]["id"] == undated["id"]
    for params in ({"assignee_id": bob}, {"contact_id": "c"}, {"status": "open", "sort": "-created_at"}, {}):
        plan = str(stack.rpc.call("tasks", "explain_list", params))
        assert "IXSCAN" in plan and "COLLSCAN" not in plan, params

    canceled = api.delete(f"/tasks/{undated['id']}", params={"reason": "not needed"})
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert api.delete(f"/tasks/{undated['id']}").status_code == 409


def test_completing_a_call_lands_on_the_contact_timeline(api, stack, record_events, unique):
    recorder = record_events("tasks")
    agent = announce_user(stack, f"agent-{unique}")
    contact = make_contact(api, unique)
    task = make_task(api, kind="call", title="Call about the offer", assignee_id=agent,
                     contact_id=contact["id"], due_at=iso(now() + timedelta(hours=1)))
    done = api.post(f"/tasks/{task['id']}/complete", json={"result": "Interested, send prices"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done" and done.json()["result"] == "Interested, send prices"
    event = recorder.wait_for(lambda e: e["type"] == "task_completed" and e["data"]["task"]["id"] == task["id"])
    assert event and event[0]["data"]["contact_id"] == contact["id"]
    assert event[0]["data"]["contacted_at"] and "Interested" in event[0]["data"]["summary"]

    items = wait_until(lambda: api.get(f"/contacts/{contact['id']}/timeline").json()["items"],
                       lambda items: any(e["kind"] == "task_completed" for e in items))
    entry = next(e for e in items if e["kind"] == "task_completed")
    assert entry["ref"] == {"service": "tasks", "type": "task", "id": task["id"]}
    assert "Call about the offer" in entry["summary"]
    # contacts writes the timeline entry, then moves last_contacted_at: wait for both
    touched = wait_until(lambda: api.get(f"/contacts/{contact['id']}").json()["last_contacted_at"],
                         lambda value: value is not None)
    assert touched == event[0]["data"]["contacted_at"]

    again = api.post(f"/tasks/{task['id']}/complete", json={"result": "twice"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert api.get(f"/tasks/{task['id']}").json()["result"] == "Interested, send prices"


def test_bad_input_is_rejected_and_writes_nothing(api, stack, unique):
    tasks = stack.db("tasks")["tasks"]
    carol = announce_user(stack, f"carol-{unique}")
    gone = announce_user(stack, f"gone-{unique}", active=False)
    count = tasks.count_documents({})
    due = now() + timedelta(days=1)
    cases = [
        ({"title": "x", "due_at": "tomorrow at 5"}, "due_at"),
        ({"title": "x", "due_at": "2030-13-45T00:00:00Z"}, "due_at"),
        ({"title": "x", "kind": "meeting", "due_at": iso(due), "end_at": iso(due - timedelta(hours=1))}, "end_at"),
        ({"title": "x", "end_at": iso(due)}, "end_at"),
        ({"title": "x", "assignee_id": f"nobody-{unique}"}, "assignee_id"),
        ({"title": "x", "assignee_id": gone}, "assignee_id"),
        ({"title": "x", "contact_id": f"nope-{unique}"}, "contact_id"),
        ({"title": "x", "kind": "lunch"}, "kind"),
        ({"title": ""}, "title"),
        ({"title": "x", "reminders": [-5]}, "reminders"),
        ({"title": "x", "recurrence": {"freq": "weekly"}}, "recurrence"),
        ({"title": "x", "due_at": iso(due), "recurrence": {"freq": "hourly"}}, "recurrence"),
    ]
    for body, field in cases:
        response = api.post("/tasks", json={"assignee_id": carol, **body})
        assert response.status_code == 422, (body, response.text)
        assert field in response.json()["error"]["details"]["fields"], (body, response.text)
    task = make_task(api, assignee_id=carol, kind="meeting", due_at=iso(due), end_at=iso(due + timedelta(hours=1)))
    count += 1
    # a PATCH is checked merged with what is stored: end before the stored start
    bad = api.patch(f"/tasks/{task['id']}", json={"end_at": iso(due - timedelta(minutes=1))})
    assert bad.status_code == 422 and "end_at" in bad.json()["error"]["details"]["fields"]
    assert api.patch(f"/tasks/{task['id']}", json={"due_at": "soon"}).status_code == 422
    assert api.patch(f"/tasks/{task['id']}", json={"assignee_id": f"nobody-{unique}"}).status_code == 422
    assert api.get(f"/tasks/{task['id']}").json() == task
    assert api.get("/tasks/does-not-exist").status_code == 404
    assert api.post("/tasks/does-not-exist/complete", json={}).status_code == 404
    assert api.get("/tasks", params={"due_before": "yesterday"}).status_code == 422
    assert api.get("/tasks", params={"sort": "title"}).status_code == 422
    assert api.get("/calendar", params={"from": iso(due), "to": iso(due - timedelta(days=1)),
                                        "assignee_id": carol}).status_code == 422
    assert api.get("/calendar", params={"from": iso(due)}).status_code == 422
    assert tasks.count_documents({}) == count


def test_recurring_task_creates_the_next_occurrence_once(api, stack, unique):
    dave = announce_user(stack, f"dave-{unique}")
    due = datetime(2031, 1, 31, 9, 0, tzinfo=timezone.utc)
    monthly = make_task(api, title="Monthly report", assignee_id=dave, due_at=iso(due),
                        reminders=[30], recurrence={"freq": "monthly"})
    done = api.post(f"/tasks/{monthly['id']}/complete", json={"result": "sent"}).json()
    nxt = api.get(f"/tasks/{done['next_task_id']}").json()
    assert nxt["due_at"] == "2031-02-28T09:00:00Z"  # clamped to the month's last day
    assert nxt["status"] == "open" and nxt["reminders"] == [30] and nxt["series_id"] == monthly["id"]
    assert nxt["source"] == {"type": "recurrence", "id": monthly["id"]}
    assert api.post(f"/tasks/{monthly['id']}/complete", json={}).status_code == 409

    weekly = make_task(api, title="Standup", kind="meeting", assignee_id=dave, due_at=iso(due),
                       end_at=iso(due + timedelta(minutes=30)),
                       recurrence={"freq": "weekly", "interval": 2, "until": iso(due + timedelta(days=20))})
    next_id = api.post(f"/tasks/{weekly['id']}/complete", json={}).json()["next_task_id"]
    second = api.get(f"/tasks/{next_id}").json()
    assert second["due_at"] == iso(due + timedelta(days=14))
    assert second["end_at"] == iso(due + timedelta(days=14, minutes=30))
    last = api.post(f"/tasks/{second['id']}/complete", json={}).json()
    assert last["next_task_id"] is None  # the next one would be past `until`
    # the next tasks are written by the service, not named by the client's request: the
    # index lists them within about a second
    series = wait_until(lambda: api.get("/tasks", params={"assignee_id": dave, "sort": "created_at"}).json()["items"],
                        lambda items: len(items) >= 4)
    assert len(series) == 4


def test_calendar_is_ordered_and_only_the_users(api, stack, unique):
    erin, frank = announce_user(stack, f"erin-{unique}"), announce_user(stack, f"frank-{unique}")
    base = datetime(2032, 3, 10, 8, 0, tzinfo=timezone.utc)
    late = make_task(api, title="late", assignee_id=erin, due_at=iso(base + timedelta(hours=5)))
    meeting = make_task(api, title="meet", kind="meeting", assignee_id=erin, due_at=iso(base + timedelta(hours=1)),
                        end_at=iso(base + timedelta(hours=2)))
    make_task(api, title="outside", assignee_id=erin, due_at=iso(base + timedelta(days=3)))
    make_task(api, title="someone else", assignee_id=frank, due_at=iso(base + timedelta(hours=2)))
    canceled = make_task(api, title="canceled", assignee_id=erin, due_at=iso(base + timedelta(hours=3)))
    api.delete(f"/tasks/{canceled['id']}")
    done = make_task(api, title="done", assignee_id=erin, due_at=iso(base + timedelta(hours=4)))
    api.post(f"/tasks/{done['id']}/complete", json={})
    params = {"from": iso(base), "to": iso(base + timedelta(days=1)), "assignee_id": erin}
    items = api.get("/calendar", params=params).json()["items"]
    assert [t["title"] for t in items] == ["meet", "done", "late"]
    assert items[0]["end_at"] == meeting["end_at"] and items[2]["id"] == late["id"]
    only_open = api.get("/calendar", params={**params, "include_done": "false"}).json()["items"]
    assert [t["title"] for t in only_open] == ["meet", "late"]


def test_calendar_shows_what_started_before_the_window_and_still_runs(api, stack, unique):
    """A view from 10:00 shows the 9:00-11:00 meeting and a conference that started two days
    before and lasts four, but not a meeting that ended at 10:00 or before."""
    ivy = announce_user(stack, f"ivy-{unique}")
    base = datetime(2033, 5, 10, 10, 0, tzinfo=timezone.utc)

    def meeting(title, start, end):
        return make_task(api, title=title, kind="meeting", assignee_id=ivy,
                         due_at=iso(base + start), end_at=iso(base + end))
    meeting("running", timedelta(hours=-1), timedelta(hours=1))
    meeting("ended at from", timedelta(hours=-2), timedelta(0))
    meeting("ended before", timedelta(hours=-3), timedelta(hours=-2))
    conference = meeting("conference", timedelta(days=-2), timedelta(days=2))
    meeting("inside", timedelta(hours=2), timedelta(hours=3))
    make_task(api, title="after the window", assignee_id=ivy, due_at=iso(base + timedelta(days=1, hours=1)))
    params = {"from": iso(base), "to": iso(base + timedelta(days=1)), "assignee_id": ivy}
    items = api.get("/calendar", params=params).json()["items"]
    assert [t["title"] for t in items] == ["conference", "running", "inside"]
    # pages of one keep the order and lose nothing
    titles, cursor = [], None
    while True:
        page = api.get("/calendar", params={**params, "limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        titles += [t["title"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert titles == ["conference", "running", "inside"]
    # a task made longer later is found by its new span
    moved = api.patch(f"/tasks/{conference['id']}", json={"due_at": iso(base - timedelta(days=9)),
                                                          "end_at": iso(base + timedelta(hours=5))})
    assert moved.status_code == 200, moved.text
    assert [t["title"] for t in api.get("/calendar", params=params).json()["items"]][0] == "conference"


def test_agenda_overdue_then_today_then_deals_without_next_step(api, stack, unique):
    gina = announce_user(stack, f"gina-{unique}")
    current = now()
    end_of_day = current.replace(hour=23, minute=59, second=0, microsecond=0)
    old = make_task(api, title="old", assignee_id=gina, due_at=iso(current - timedelta(days=2)))
    recent = make_task(api, title="recent", assignee_id=gina, due_at=iso(current - timedelta(minutes=5)))
    later = make_task(api, title="later today", assignee_id=gina,
                      due_at=iso(min(current + timedelta(minutes=3), end_of_day)))
    make_task(api, title="tomorrow", assignee_id=gina, due_at=iso(current + timedelta(days=1, hours=1)))
    agenda = api.get("/agenda", params={"assignee_id": gina}).json()
    assert [t["id"] for t in agenda["overdue"]] == [old["id"], recent["id"]]
    assert all(t["overdue"] for t in agenda["overdue"])
    assert [t["id"] for t in agenda["today"]] == [later["id"]]
    assert agenda["date"] == current.date().isoformat()
    if agenda["deals_unavailable"]:
        assert agenda["deals_without_next_step"] is None
    else:
        assert isinstance(agenda["deals_without_next_step"], list)
    mine = api.get("/agenda")  # no assignee_id: the caller's own agenda
    if getattr(api, "user", None):
        assert mine.status_code == 200 and mine.json()["assignee_id"] == api.user["id"]
    else:  # no signed-in user: say whose agenda
        assert mine.status_code == 422


def test_agenda_lists_open_deals_with_no_open_task(api, stack, unique):
    """Needs the deals service: open deals of the owner minus those with an open task."""
    owner = announce_user(stack, f"owner-{unique}")
    pipeline = api.post("/pipelines", json={"name": f"P{unique}", "stages": [
        {"name": "New", "kind": "open"}, {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]})
    if pipeline.status_code != 201:
        pytest.skip(f"deals API not available: {pipeline.status_code}")
    pipeline = pipeline.json()
    deals = []
    for title in ("with task", "without task"):
        made = api.post("/deals", json={"title": title, "pipeline_id": pipeline["id"], "owner_id": owner,
                                        "amount": 1000, "currency": "EUR"})
        assert made.status_code == 201, made.text
        deals.append(made.json())
    make_task(api, title="next step", assignee_id=owner, deal_id=deals[0]["id"],
              due_at=iso(now() + timedelta(days=3)))
    agenda = api.get("/agenda", params={"assignee_id": owner}).json()
    assert agenda["deals_unavailable"] is False
    assert [d["id"] for d in agenda["deals_without_next_step"]] == [deals[1]["id"]]


def test_missed_call_creates_one_callback_task(api, stack, record_events, unique):
    recorder = record_events("tasks")
    owner = announce_user(stack, f"owner-{unique}")
    contact = make_contact(api, unique)
    missed_at = now() - timedelta(minutes=1)
    call_id = f"call-{unique}"
    data = {"call": {"id": call_id, "started_at": iso(missed_at), "direction": "inbound"},
            "contact_id": contact["id"], "agent_id": f"agent-{unique}", "owner_id": owner,
            "from": "+390212345678", "to": "+390299999999"}
    for _ in range(2):  # the same event delivered twice
        publish_event(stack.amqp_uri, "telephony", "call_missed", data, event_id=f"evt-{unique}")
    publish_event(stack.amqp_uri, "telephony", "call_missed", data)  # and re-sent with a new id
    created = recorder.wait_for(lambda e: e["type"] == "task_created" and e["data"]["task"]["call_id"] == call_id)
    assert created
    # a later missed call, through the same queue, handled: so were the repeats before it
    publish_event(stack.amqp_uri, "telephony", "call_missed",
                  {**data, "call": {"id": f"{call_id}-later", "started_at": iso(missed_at)},
                   "contact_id": None, "owner_id": f"later-{unique}"})
    assert recorder.wait_for(lambda e: e["type"] == "task_created"
                             and e["data"]["task"]["call_id"] == f"{call_id}-later")
    assert len([e for e in recorder.events if e["type"] == "task_created"
                and e["data"]["task"]["call_id"] == call_id]) == 1
    # the list is served by the search index, which sees another service's write within ~1 s
    items = wait_until(lambda: api.get("/tasks", params={"contact_id": contact["id"]}).json()["items"],
                       lambda items: len(items) >= 1)
    assert len(items) == 1
    task = items[0]
    assert task["assignee_id"] == owner and task["kind"] == "call" and task["call_id"] == call_id
    assert task["source"] == {"type": "call_missed", "id": call_id}
    assert parse_iso(task["due_at"]) == parse_iso(iso(missed_at)) + timedelta(minutes=60)
    assert "+390212345678" in task["title"]

    # no owner: the called agent gets it
    publish_event(stack.amqp_uri, "telephony", "call_missed",
                  {**data, "call": {"id": f"{call_id}-2"}, "owner_id": None, "contact_id": None})
    by_agent = wait_until(lambda: api.get("/tasks", params={"assignee_id": f"agent-{unique}"}).json()["items"],
                          lambda items: len(items) == 1)
    assert by_agent and by_agent[0]["call_id"] == f"{call_id}-2"


def test_no_callback_when_the_contact_was_reached_since(api, stack, unique):
    owner = announce_user(stack, f"owner-{unique}")
    reached, later = make_contact(api, unique), make_contact(api, unique + "b")
    missed_at = now() - timedelta(minutes=10)
    # answered after the missed call, and heard of first: no callback task at all
    publish_event(stack.amqp_uri, "telephony", "call_answered",
                  {"call": {"id": f"a-{unique}", "answered_at": iso(missed_at + timedelta(minutes=2))},
                   "contact_id": reached["id"], "owner_id": owner, "agent_id": owner})
    wait_until(lambda: stack.db("tasks")["contact_calls"].find_one({"_id": reached["id"]}), bool)
    publish_event(stack.amqp_uri, "telephony", "call_missed",
                  {"call": {"id": f"m-{unique}", "started_at": iso(missed_at)},
                   "contact_id": reached["id"], "owner_id": owner, "agent_id": owner})
    # a missed call whose callback is open, then an answered call: the task is closed
    publish_event(stack.amqp_uri, "telephony", "call_missed",
                  {"call": {"id": f"m2-{unique}", "started_at": iso(missed_at)},
                   "contact_id": later["id"], "owner_id": owner, "agent_id": owner})
    items = wait_until(lambda: api.get("/tasks", params={"contact_id": later["id"]}).json()["items"],
                       lambda items: len(items) == 1)
    assert items and items[0]["status"] == "open"
    publish_event(stack.amqp_uri, "telephony", "call_ended",
                  {"call": {"id": f"e-{unique}", "outcome": "no_answer", "started_at": iso(now())},
                   "contact_id": later["id"]})
    publish_event(stack.amqp_uri, "telephony", "call_ended",
                  {"call": {"id": f"e2-{unique}", "outcome": "answered", "answered_at": iso(now())},
                   "contact_id": later["id"]})
    closed = wait_until(lambda: api.get(f"/tasks/{items[0]['id']}").json(),
                        lambda t: t["status"] != "open")
    assert closed["status"] == "canceled" and closed["cancel_reason"] == "answered_call"
    # the missed call of `reached` came through the queue before `later`'s, handled above
    assert api.get("/tasks", params={"contact_id": reached["id"]}).json()["items"] == []


def test_stage_rules_create_tasks_once_per_event(api, stack, record_events, unique):
    recorder = record_events("tasks")
    owner = announce_user(stack, f"owner-{unique}")
    pipeline_id, stage_id = f"p-{unique}", f"s-{unique}"
    rule = api.post("/task-rules", json={"pipeline_id": pipeline_id, "stage_id": stage_id,
                                         "title": "Send the proposal", "kind": "email",
                                         "due_in_minutes": 24 * 60, "reminders": [60]})
    assert rule.status_code == 201, rule.text
    rule = rule.json()
    other = api.post("/task-rules", json={"pipeline_id": pipeline_id, "stage_id": "elsewhere",
                                          "title": "Not this one"}).json()
    listed = api.get("/task-rules", params={"pipeline_id": pipeline_id, "stage_id": stage_id}).json()["items"]
    assert [r["id"] for r in listed] == [rule["id"]]
    assert api.post("/task-rules", json={"pipeline_id": pipeline_id, "title": "x"}).status_code == 422
    assert api.patch(f"/task-rules/{other['id']}", json={"active": False}).json()["active"] is False
    assert api.get(f"/task-rules/{other['id']}").json()["active"] is False
    assert api.delete(f"/task-rules/{other['id']}").status_code == 200
    assert api.get(f"/task-rules/{other['id']}").status_code == 404

    deal_id = f"deal-{unique}"
    data = {"deal": {"id": deal_id}, "deal_id": deal_id, "pipeline_id": pipeline_id,
            "from_stage_id": "s0", "to_stage_id": stage_id, "owner_id": owner,
            "contact_id": f"c-{unique}", "actor_id": owner}
    event = None
    for _ in range(2):
        event = publish_event(stack.amqp_uri, "deals", "deal_stage_changed", data, event_id=f"ev-{unique}")
    items = wait_until(lambda: api.get("/tasks", params={"deal_id": deal_id}).json()["items"],
                       lambda items: len(items) >= 1)
    assert len(items) == 1  # and still one once a later event is handled (below)
    task = items[0]
    assert task["title"] == "Send the proposal" and task["kind"] == "email"
    assert task["assignee_id"] == owner and task["contact_id"] == f"c-{unique}"
    assert task["reminders"] == [60]
    assert parse_iso(task["due_at"]) == parse_iso(event["occurred_at"]).replace(microsecond=0) + timedelta(days=1) \
        or abs((parse_iso(task["due_at"]) - parse_iso(event["occurred_at"]) - timedelta(days=1)).total_seconds()) < 1
    assert task["source"]["type"] == "stage_rule" and task["source"]["id"] == rule["id"]
    # the deal enters the stage again (a new event, through the queue after the repeat):
    # one more task
    again = publish_event(stack.amqp_uri, "deals", "deal_stage_changed", data)
    items = wait_until(lambda: api.get("/tasks", params={"deal_id": deal_id}).json()["items"],
                       lambda items: again["event_id"] in [t["source"].get("event_id") for t in items])
    assert len(items) == 2


def test_report_per_assignee(api, stack, unique):
    hank = announce_user(stack, f"hank-{unique}")
    current = now()
    late = make_task(api, title="late", assignee_id=hank, due_at=iso(current - timedelta(hours=2)))
    on_time = make_task(api, title="on time", assignee_id=hank, due_at=iso(current + timedelta(hours=2)))
    make_task(api, title="overdue", assignee_id=hank, due_at=iso(current - timedelta(hours=1)))
    make_task(api, title="open", assignee_id=hank, due_at=iso(current + timedelta(hours=3)))
    for task in (late, on_time):
        assert api.post(f"/tasks/{task['id']}/complete", json={}).status_code == 200
    params = {"assignee_id": hank, "from": iso(current - timedelta(days=1)), "to": iso(current + timedelta(days=1))}
    body = api.get("/reports/tasks", params=params).json()
    assert body["group_by"] == "assignee"
    [row] = body["items"]
    assert row["assignee_id"] == hank
    assert (row["total"], row["open"], row["done"], row["overdue"]) == (4, 2, 2, 1)
    assert (row["done_on_time"], row["done_late"], row["on_time_rate"]) == (1, 1, 0.5)
    by_day = api.get("/reports/tasks", params={**params, "period": "day"}).json()["items"]
    assert sum(r["total"] for r in by_day) == 4 and all(r["period"] for r in by_day)
    by_month = api.get("/reports/tasks", params={**params, "group_by": "month"}).json()["items"]
    assert sum(r["total"] for r in by_month) == 4 and all(r["assignee_id"] is None for r in by_month)
    assert api.get("/reports/tasks", params={"group_by": "color"}).status_code == 422


def test_agents_see_their_tasks_managers_their_teams(api, stack, request, unique):
    try:
        make_user = request.getfixturevalue("make_user")
    except pytest.FixtureLookupError:
        pytest.skip("sign-in is not available in this tree")
    team = f"team-{unique}"
    manager = make_user(role="manager", team=team)
    agent = make_user(role="agent", team=team, manager_id=manager.user["id"])
    outsider = make_user(role="agent", team=f"other-{unique}")
    users = stack.db("tasks")["users"]
    for person in (manager, agent, outsider):  # the gateway announces them (user_upserted)
        assert wait_until(lambda p=person: users.find_one({"_id": p.user["id"]}), bool), person.user
    assert users.find_one({"_id": agent.user["id"]})["manager_id"] == manager.user["id"]

    own = agent.post("/tasks", json={"title": "mine"})
    assert own.status_code == 201, own.text
    own = own.json()
    assert own["assignee_id"] == agent.user["id"] and own["creator_id"] == agent.user["id"]
    theirs = make_task(api, title="theirs", assignee_id=outsider.user["id"])
    # the assignment rule (docs/auth.md): an agent gives tasks to themselves only
    refused = agent.post("/tasks", json={"title": "for a colleague", "assignee_id": outsider.user["id"]})
    assert refused.status_code == 403
    handed = manager.post("/tasks", json={"title": "for the team", "assignee_id": agent.user["id"]}).json()

    assert agent.get(f"/tasks/{theirs['id']}").status_code == 404
    # the list is read from the search index: the manager's write reaches it within a second
    listed = wait_until(lambda: {t["id"] for t in agent.get("/tasks").json()["items"]},
                        lambda ids: ids == {own["id"], handed["id"]})
    assert listed == {own["id"], handed["id"]}  # assigned to them or created by them
    assert outsider.get(f"/tasks/{handed['id']}").status_code == 404
    assert manager.get(f"/tasks/{own['id']}").status_code == 200  # their team's
    assert manager.get(f"/tasks/{theirs['id']}").status_code == 404
    assert outsider.post(f"/tasks/{own['id']}/complete", json={}).status_code == 404
    assert agent.get("/agenda").json()["assignee_id"] == agent.user["id"]


def test_moving_a_real_deal_runs_the_stage_rule(api, stack, unique):
    """Through the deals service itself: POST /deals/{id}/move -> deal_stage_changed -> task."""
    owner = announce_user(stack, f"owner-{unique}")
    pipeline = api.post("/pipelines", json={"name": f"Sales {unique}", "stages": [
        {"name": "New", "kind": "open"}, {"name": "Send proposal", "kind": "open"},
        {"name": "Won", "kind": "won"}, {"name": "Lost", "kind": "lost"}]})
    if pipeline.status_code != 201:
        pytest.skip(f"deals API not available: {pipeline.status_code}")
    pipeline = pipeline.json()
    proposal = pipeline["stages"][1]["id"]
    rule = api.post("/task-rules", json={"pipeline_id": pipeline["id"], "stage_id": proposal,
                                         "title": "Send the proposal", "due_in_minutes": 24 * 60})
    assert rule.status_code == 201, rule.text
    deal = api.post("/deals", json={"title": f"Deal {unique}", "pipeline_id": pipeline["id"],
                                    "owner_id": owner, "amount": 50000, "currency": "EUR"})
    assert deal.status_code == 201, deal.text
    deal = deal.json()
    moved = api.post(f"/deals/{deal['id']}/move", json={"stage_id": proposal})
    assert moved.status_code == 200, moved.text
    items = wait_until(lambda: api.get("/tasks", params={"deal_id": deal["id"]}).json()["items"],
                       lambda items: len(items) == 1)
    assert [t["title"] for t in items] == ["Send the proposal"]
    assert items[0]["assignee_id"] == owner
    due_in = parse_iso(items[0]["due_at"]) - parse_iso(moved.json()["updated_at"])
    assert abs(due_in - timedelta(days=1)) < timedelta(seconds=5)
    # the deal has a next step now: not in the agenda's "no next step" list
    agenda = api.get("/agenda", params={"assignee_id": owner}).json()
    assert deal["id"] not in [d["id"] for d in agenda["deals_without_next_step"] or []]
