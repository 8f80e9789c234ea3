"""Nothing lost: the outbox publishes events whose broker was down at write time, and a
handler that keeps failing is dead-lettered instead of requeued forever."""
import time
from urllib.parse import urlparse

import pytest

from tests.faults import CuttableProxy


@pytest.fixture
def contacts_with_cuttable_events(stack):
    """contacts replica 1 publishes its events through a proxy the test can cut; replica 0
    is stopped meanwhile so every RPC goes to replica 1."""
    broker = urlparse(stack.amqp_uri)
    proxy = CuttableProxy(broker.hostname, broker.port or 5672)
    events_uri = broker._replace(
        netloc=f"{broker.username}:{broker.password}@127.0.0.1:{proxy.port}").geturl()
    stack.stop_service("contacts", 0)
    stack.start_service("contacts", 1, CRM_EVENTS_AMQP_URI=events_uri,
                        CRM_OUTBOX_RELAY_SECONDS="0.5")
    stack.wait_service("contacts")
    yield proxy
    stack.stop_service("contacts", 1)
    proxy.close()
    stack.start_service("contacts", 0)
    stack.wait_service("contacts")


def test_event_of_a_write_made_while_the_broker_was_down_goes_out_later(
        api, stack, record_events, unique, contacts_with_cuttable_events):
    proxy = contacts_with_cuttable_events
    recorder = record_events("contacts", "contact_created")
    proxy.cut()
    created = api.post("/contacts", json={"first_name": "Outage", "last_name": unique})
    assert created.status_code == 201, created.text  # the write is accepted
    contact_id = created.json()["id"]
    outbox = stack.db("contacts")["outbox"]
    assert outbox.count_documents({"body.data.contact.id": contact_id}) == 1
    assert not recorder.wait_for(lambda e: e["data"]["contact"]["id"] == contact_id, timeout=2)

    proxy.restore()
    found = recorder.wait_for(lambda e: e["data"]["contact"]["id"] == contact_id, timeout=20)
    assert len(found) == 1
    deadline = time.time() + 5
    while outbox.count_documents({"body.data.contact.id": contact_id}) and time.time() < deadline:
        time.sleep(0.1)
    assert outbox.count_documents({"body.data.contact.id": contact_id}) == 0


def test_events_go_out_at_once_when_the_broker_is_up(api, stack, record_events, unique):
    recorder = record_events("contacts", "contact_created")
    created = api.post("/contacts", json={"first_name": "Fast", "last_name": unique}).json()
    assert recorder.wait_for(lambda e: e["data"]["contact"]["id"] == created["id"], timeout=5)
    assert stack.db("contacts")["outbox"].count_documents({"body.data.contact.id": created["id"]}) == 0


def test_a_handler_that_keeps_failing_is_dead_lettered_with_its_error_and_replayable(api, stack, unique):
    from crm_common.messaging.publish import publish_event
    queue = "evt-telephony-call_missed--tasks.on_call_missed"
    agent = f"agent-{unique}"
    # a poison event its contract accepts: the callback task would be due after the year
    # 9999, so the tasks handler fails on every attempt (a refused event: test_events_contract)
    publish_event(stack.amqp_uri, "telephony", "call_missed",
                  {"call": {"id": f"poison-{unique}", "started_at": "9999-12-31T23:30:00Z"},
                   "contact_id": None, "agent_id": agent, "owner_id": None})

    def dead():
        answer = api.get("/admin/dead-letters")
        assert answer.status_code == 200, answer.text
        listed = answer.json()["items"]
        return next(q for q in listed if q["queue"] == queue)

    deadline = time.time() + 20
    while dead()["count"] < 1 and time.time() < deadline:
        time.sleep(0.3)
    entry = dead()
    assert entry["service"] == "tasks" and entry["count"] == 1
    message = entry["messages"][0]
    assert message["attempts"] == 3  # CRM_EVENT_MAX_ATTEMPTS in the test stack
    assert "OverflowError" in message["error"]
    assert f"poison-{unique}" in message["body"]
    assert dead()["count"] == 1  # looking did not consume it

    # a healthy event on the same queue still flows
    publish_event(stack.amqp_uri, "telephony", "call_missed",
                  {"call": {"id": f"ok-{unique}", "started_at": "2030-01-02T10:00:00Z"},
                   "contact_id": None, "agent_id": agent, "owner_id": None})
    deadline = time.time() + 10
    while time.time() < deadline:
        tasks = api.get("/tasks", params={"assignee_id": agent}).json()["items"]
        if tasks:
            break
        time.sleep(0.2)
    assert [t["call_id"] for t in tasks] == [f"ok-{unique}"]

    # replay: back to its queue, fails its attempts again, and is parked again: never lost
    replay = api.post("/admin/dead-letters/replay", json={"service": "tasks", "queue": queue})
    assert replay.status_code == 200 and replay.json()["moved"] == {queue: 1}
    deadline = time.time() + 20
    while dead()["count"] < 1 and time.time() < deadline:
        time.sleep(0.3)
    assert dead()["count"] == 1
    assert dead()["messages"][0]["attempts"] == 3
    assert api.post("/admin/dead-letters/replay", json={"service": "nope"}).status_code == 422
