"""The tasks service alone: create and complete over its entrypoints with the events they
announce, and the callback task a missed call (telephony's event) creates."""
from datetime import datetime, timedelta, timezone

import pytest
from nameko.testing.services import entrypoint_waiter

from crm_common.errors import Conflict
from tests.services.support import call, iso, missed_call


@pytest.fixture
def tasks(start_service):
    from services.tasks.service import TasksService
    container, _ = start_service(TasksService)
    return container


def test_create_and_complete_announce_their_events(tasks, record_events, unique):
    events = record_events("tasks")
    me = {"user_id": f"u-{unique}", "user_role": "agent"}
    created = call(tasks, "create_task", {"title": "Send offer", "kind": "email",
                                          "due_at": "2031-05-01T09:00:00Z"}, context=me)
    assert created["assignee_id"] == me["user_id"] and created["status"] == "open"
    done = call(tasks, "complete_task", created["id"], {"result": "sent"}, context=me)
    assert done["status"] == "done" and done["result"] == "sent"
    with pytest.raises(Conflict):
        call(tasks, "complete_task", created["id"], {}, context=me)

    assert events.wait_for(lambda e: e["type"] == "task_completed")
    mine = [e for e in events.events if e["data"]["task"]["id"] == created["id"]]
    assert [e["type"] for e in mine] == ["task_created", "task_completed"]
    assert mine[0]["data"]["assignee_id"] == me["user_id"]
    assert mine[1]["data"]["result"] == "sent" and mine[1]["data"]["actor_id"] == me["user_id"]


def test_a_missed_call_creates_one_callback_task(tasks, publish, record_events, unique):
    events = record_events("tasks", "task_created")
    started = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
    data = missed_call(unique, f"c-{unique}", f"owner-{unique}", started)
    for _ in range(2):  # delivered twice: one task
        with entrypoint_waiter(tasks, "on_call_missed"):
            publish("telephony", "call_missed", data, event_id=f"evt-{unique}")
    [task] = call(tasks, "list_tasks", {"contact_id": f"c-{unique}"})["items"]
    assert task["kind"] == "call" and task["priority"] == "high"
    assert task["assignee_id"] == f"owner-{unique}" and task["call_id"] == f"call-{unique}"
    assert task["source"] == {"type": "call_missed", "id": f"call-{unique}"}
    assert task["due_at"] == iso(started + timedelta(minutes=60))
    assert "+390255501234" in task["title"]
    assert events.wait_for(lambda e: e["data"]["task"]["id"] == task["id"])


def test_no_callback_for_a_contact_answered_since_the_missed_call(tasks, unique):
    """Both events through entrypoint_hook: the handlers' own logic, no broker in between."""
    missed_at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    contact_id = f"c-{unique}"
    answered = {"event_id": f"a-{unique}", "type": "call_answered", "source": "telephony",
                "occurred_at": iso(missed_at + timedelta(minutes=2)),
                "data": {"call": {"id": f"a-{unique}",
                                  "answered_at": iso(missed_at + timedelta(minutes=2))},
                         "contact_id": contact_id, "owner_id": "o1", "agent_id": "o1"}}
    call(tasks, "on_call_answered", answered)
    missed = {"event_id": f"m-{unique}", "type": "call_missed", "source": "telephony",
              "occurred_at": iso(missed_at),
              "data": missed_call(unique, contact_id, "o1", missed_at, call_id=f"m-{unique}")}
    call(tasks, "on_call_missed", missed)
    assert call(tasks, "list_tasks", {"contact_id": contact_id})["items"] == []
