"""Reminders, overdue and escalation through the real stack with TWO tasks processes, both
running their timer: each notice must be announced exactly once. Time is driven with the
test clock (CRM_TEST_CLOCK=1: an offset kept in the tasks database, seen by both replicas),
never with sleeps of minutes."""
import time
from datetime import timedelta

import pytest

from crm_common.timeutil import parse_iso, to_iso
from tests.test_tasks import announce_user, make_task

CLOCKED = {"CRM_TEST_CLOCK": 1, "CRM_TASKS_TICK_SECONDS": 0.3,
           "CRM_TASKS_ESCALATION_GRACE_MINUTES": 30}


def start_clocked_replicas(stack):
    for replica in (0, 1):
        stack.start_service("tasks", replica, **CLOCKED)
    pids, deadline = set(), time.time() + 180
    while len(pids) < 2:  # both processes answer (RabbitMQ round-robins the RPC queue)
        assert time.time() < deadline, "two tasks replicas did not come up"
        for replica in (0, 1):  # a start that died on a broker timeout (busy machine): again
            if stack.processes[f"tasks-{replica}"].poll() is not None:
                stack.start_service("tasks", replica, **CLOCKED)
        try:
            info = stack.rpc.call("tasks", "replica_info", timeout=2)
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
            continue
        if info["test_clock"]:
            pids.add(info["pid"])
    return pids


@pytest.fixture(scope="module")
def two_replicas(stack):
    """Replace the session's tasks process by two with the test clock; restore after."""
    stack.stop_service("tasks", 0)
    try:
        start_clocked_replicas(stack)
        yield stack
    finally:
        stack.stop_service("tasks", 1)
        stack.stop_service("tasks", 0)
        stack.start_service("tasks", 0)
        stack.wait_service("tasks")


def clock_now(stack):
    return parse_iso(stack.rpc.call("tasks", "now"))


def advance(stack, minutes):
    return parse_iso(stack.rpc.call("tasks", "advance_clock", minutes * 60))


def notices_of(recorder, task_id, kind=None):
    return [e for e in recorder.events if e["data"].get("task", {}).get("id") == task_id
            and e["type"] in ("task_due_soon", "task_overdue", "task_escalated")
            and (kind is None or e["type"] == kind)]


def wait_notice(recorder, task_id, kind, **match):
    found = recorder.wait_for(lambda e: e["type"] == kind and e["data"]["task"]["id"] == task_id
                              and all(e["data"].get(k) == v for k, v in match.items()), timeout=15)
    assert found, (kind, match)
    return found[0]


def scanned(api, stack, recorder, assignee):
    """Returns once a timer scan has run since this was called (with the test clock as it
    is now): a task made now whose reminder is due already gets its notice (the task is
    then completed, out of the way)."""
    due = clock_now(stack) + timedelta(minutes=10)
    probe = make_task(api, title="Probe", assignee_id=assignee, due_at=to_iso(due),
                      reminders=[15])
    wait_notice(recorder, probe["id"], "task_due_soon")
    assert api.post(f"/tasks/{probe['id']}/complete", json={}).status_code == 200


def test_reminders_overdue_and_escalation_exactly_once(two_replicas, api, record_events, unique):
    stack = two_replicas
    recorder = record_events("tasks")
    manager = announce_user(stack, f"boss-{unique}")
    agent = announce_user(stack, f"agent-{unique}", manager_id=manager)
    start = clock_now(stack)
    due = (start + timedelta(minutes=60)).replace(microsecond=0)
    task = make_task(api, title="Call back Rossi", kind="call", assignee_id=agent,
                     due_at=to_iso(due), reminders=[15, 5])

    scanned(api, stack, recorder, agent)  # nothing is due yet
    assert notices_of(recorder, task["id"]) == []

    advance(stack, 46)  # 14 minutes before due: the 15-minute reminder
    soon = wait_notice(recorder, task["id"], "task_due_soon", offset_minutes=15)
    assert soon["data"]["assignee_id"] == agent and soon["data"]["due_at"] == to_iso(due)
    advance(stack, 10)  # 4 minutes before: the 5-minute reminder
    wait_notice(recorder, task["id"], "task_due_soon", offset_minutes=5)
    advance(stack, 5)  # 1 minute late
    overdue = wait_notice(recorder, task["id"], "task_overdue")
    assert overdue["data"]["task"]["overdue"] is True
    # overdue at the tasks service's test clock: its own list (the gateway's list reads the
    # search index, which knows only the real time)
    assert stack.rpc.call("tasks", "list_tasks", {"assignee_id": agent, "overdue": True}
                          )["items"][0]["id"] == task["id"]
    advance(stack, 20)  # still within the 30-minute grace: no escalation
    scanned(api, stack, recorder, agent)
    assert notices_of(recorder, task["id"], "task_escalated") == []
    advance(stack, 15)  # grace over, still open: the manager is told
    escalated = wait_notice(recorder, task["id"], "task_escalated")
    assert escalated["data"]["manager_id"] == manager and escalated["data"]["assignee_id"] == agent

    advance(stack, 120)
    recorder.drain(2.0)  # many more ticks of both replicas
    kinds = sorted((e["type"], e["data"].get("offset_minutes")) for e in notices_of(recorder, task["id"]))
    assert kinds == [("task_due_soon", 5), ("task_due_soon", 15), ("task_escalated", None),
                     ("task_overdue", None)]
    claims = stack.db("tasks")["notices"].count_documents({"task_id": task["id"], "state": "sent"})
    assert claims == 4


def test_done_in_time_is_not_escalated_and_moving_due_rearms(two_replicas, api, record_events, unique):
    stack = two_replicas
    recorder = record_events("tasks")
    manager = announce_user(stack, f"boss-{unique}")
    agent = announce_user(stack, f"agent-{unique}", manager_id=manager)
    due = (clock_now(stack) + timedelta(minutes=30)).replace(microsecond=0)
    done = make_task(api, title="Will be done", assignee_id=agent, due_at=to_iso(due))
    moved = make_task(api, title="Will be moved", assignee_id=agent, due_at=to_iso(due), reminders=[10])
    advance(stack, 25)
    wait_notice(recorder, moved["id"], "task_due_soon", offset_minutes=10)
    new_due = due + timedelta(hours=2)
    assert api.patch(f"/tasks/{moved['id']}", json={"due_at": to_iso(new_due)}).status_code == 200
    advance(stack, 10)  # the old due passes: the first is overdue, the moved one is not
    wait_notice(recorder, done["id"], "task_overdue")
    assert api.post(f"/tasks/{done['id']}/complete", json={"result": "late but done"}).status_code == 200
    advance(stack, 105)  # 10 minutes before the new due: the reminder again, for the new date
    wait_notice(recorder, moved["id"], "task_due_soon", due_at=to_iso(new_due))
    advance(stack, 60)  # past the grace of the first task: done, so never escalated
    scanned(api, stack, recorder, agent)
    assert notices_of(recorder, done["id"], "task_escalated") == []
    wait_notice(recorder, moved["id"], "task_overdue")
    assert [e["type"] for e in notices_of(recorder, moved["id"])].count("task_overdue") == 1
    assert [e["data"]["due_at"] for e in notices_of(recorder, moved["id"], "task_overdue")] == [to_iso(new_due)]


def test_reminders_survive_a_restart_of_every_replica(two_replicas, api, record_events, unique):
    stack = two_replicas
    recorder = record_events("tasks")
    agent = announce_user(stack, f"agent-{unique}")
    due = (clock_now(stack) + timedelta(minutes=40)).replace(microsecond=0)
    task = make_task(api, title="Survives", assignee_id=agent, due_at=to_iso(due), reminders=[30])
    for replica in (0, 1):  # nothing in memory: both processes go away
        stack.stop_service("tasks", replica)
    start_clocked_replicas(stack)
    advance(stack, 15)
    wait_notice(recorder, task["id"], "task_due_soon", offset_minutes=30)
    recorder.drain(1.0)
    assert len(notices_of(recorder, task["id"])) == 1
