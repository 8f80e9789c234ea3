"""The event contract: every event published and consumed has a schema, producers dump
through it, consumers load through it, docs/events.md is generated from it, and an event
its contract refuses lands in the consumer's dead letters at once, with the reason."""
import ast
import functools
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from marshmallow import INCLUDE, fields

from contracts import catalog
from contracts.events import (EventContractError, EventData, EventRejected, Object, dump_data,
                              dump_event, load_event, registry)
from crm_common.messaging.events import envelope

ROOT = Path(__file__).resolve().parent.parent
EVENT_TYPE = re.compile(r"^[a-z]+(_[a-z]+)+$")
# calls that name the event type they build, and where: (argument index of the source or
# None for the package's own, argument index of the type)
BUILDERS = {"envelope": (0, 1), "publish_event": (1, 2), "dump_data": (0, 1),
            "_event": (None, 0), "_deal_event": (None, 0)}


def _packages():
    """(source, its .py files) of every producer."""
    for service in sorted((ROOT / "services").glob("*/service.py")):
        yield service.parent.name, sorted(service.parent.rglob("*.py"))
    yield "gateway", sorted((ROOT / "gateway").rglob("*.py"))


def _call_name(node):
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


@functools.lru_cache(maxsize=None)
def _built_events():
    """(source, event type or f-string prefix, is_prefix, where) of every event a producer
    builds with a literal type (an event whose type is a variable, like the tasks timer's
    notices or the notifications' delivery outcomes, is checked by dump_event when a test
    makes the producer publish it)."""
    return tuple(_scan_builders())


def _scan_builders():
    for package, files in _packages():
        for path in files:
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or _call_name(node) not in BUILDERS:
                    continue
                source_at, type_at = BUILDERS[_call_name(node)]
                if len(node.args) <= type_at:
                    continue
                source = package
                if source_at is not None:
                    arg = node.args[source_at]
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        source = arg.value
                kind = node.args[type_at]
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                    yield source, kind.value, False, where
                elif isinstance(kind, ast.JoinedStr) and isinstance(kind.values[0], ast.Constant):
                    yield source, kind.values[0].value, True, where


def _literals(files):
    out = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.add(node.value)
    return out


# --- coverage: every event published or consumed has a schema ---------------------------

def test_every_event_a_producer_builds_has_a_schema():
    found = list(_built_events())
    assert len(found) > 20, found  # the scan sees the producers
    for source, kind, is_prefix, where in found:
        if is_prefix:
            assert any(s == source and t.startswith(kind) for s, t in registry()), (where, kind)
        else:
            assert EVENT_TYPE.match(kind), (where, kind)
            assert (source, kind) in registry(), f"{where}: {source}.{kind} has no schema"


def test_every_schema_is_an_event_its_producer_publishes():
    """No stale schema: each event type is written in its producer's code."""
    literals = {source: _literals(files) for source, files in _packages()}
    for source, kind in registry():
        assert kind in literals[source] or any(
            kind.startswith(prefix) for s, prefix, is_prefix, _ in _built_events()
            if is_prefix and s == source), f"{source}.{kind}: no producer"


def test_every_consumed_event_has_a_schema():
    consumed = catalog.all_consumers()
    assert ("telephony", "call_missed") in consumed and ("gateway", "user_upserted") in consumed
    missing = sorted(set(consumed) - set(registry()))
    assert not missing, f"consumed without a schema: {missing}"


def test_every_schema_keeps_unknown_fields_and_uses_catalog_types():
    def check(schema, where):
        assert isinstance(schema, EventData) and schema.unknown == INCLUDE, where
        for name, field in schema.fields.items():
            inner = field.inner if isinstance(field, fields.List) else field
            if isinstance(inner, Object):
                check(inner.schema, f"{where}.{name}")
            # plain Integer/Boolean would coerce "5" / "yes": use contracts.events.Int/Bool
            assert type(inner) not in (fields.Integer, fields.Boolean, fields.DateTime,
                                       fields.Float, fields.Nested), f"{where}.{name}"
    for (source, kind), schema in registry().items():
        check(schema, f"{source}.{kind}")


# --- the catalog ---------------------------------------------------------------------------

def test_docs_events_md_is_generated_from_the_schemas():
    assert catalog.DOC.read_text() == catalog.render(), \
        "docs/events.md is stale: run python -m contracts.catalog"


def test_who_consumes_an_event_is_answered_from_code():
    found = catalog.consumers("telephony", "call_missed")
    assert ("tasks", "on_call_missed") in {(c.service, c.entrypoint) for c in found}
    assert ("contacts", "on_telephony_call_missed") in {(c.service, c.entrypoint) for c in found}
    notes = [c.note for c in found if c.service == "notifications"]
    assert any("people" in n for n in notes) and any("webhooks" in n for n in notes)
    assert catalog.consumers("notifications", "notification_failed") == []
    text = catalog.render()
    assert "### telephony.call_missed" in text and "tasks `on_call_missed`" in text
    assert "published by nameko" not in text


# --- producers dump, consumers load --------------------------------------------------------

def _call_missed(**data):
    return {"call": {"id": "c1", "started_at": "2030-01-02T10:00:00Z", "legs": []},
            "contact_id": None, "agent_id": "a1", "owner_id": None, "from": "+390212345678",
            "to": None, "summary": "Missed call", "ref": {"type": "call", "id": "c1"},
            "agent_ids": ["a1"], **data}


def test_a_producer_dumps_through_the_schema():
    body = envelope("telephony", "call_missed", _call_missed())
    out = dump_event("telephony", "call_missed", body)
    assert out == body  # JSON in, the same JSON out (the call kept whole)
    when = datetime(2030, 1, 2, 10, 0, tzinfo=timezone.utc)
    data = dump_data("tasks", "task_completed", {"task": {"id": "t1"}, "contacted_at": when})
    assert data["contacted_at"] == "2030-01-02T10:00:00Z"


@pytest.mark.parametrize("source, kind, data, error", [
    ("telephony", "call_nope", {}, "no schema"),
    ("telephony", "call_missed", _call_missed(duration=3), "not in its schema: duration"),
    ("telephony", "call_missed", _call_missed(contact_id=7), "contact_id: Not a valid string"),
    ("telephony", "call_missed", {"contact_id": None}, "call: Missing data for required field"),
    ("tasks", "task_due_soon", {"task": {"id": "t"}, "assignee_id": "u", "offset_minutes": "15"},
     "offset_minutes: Not a valid integer"),
    ("deals", "lead_routed", {"request_id": "r", "contact_id": "c", "deal_id": "d",
                              "owner_id": None, "deal_created": "yes"}, "deal_created"),
    ("contacts", "lead_captured", {"request_id": "r", "contact_id": "c", "received_at": "soon"},
     "received_at: Not an ISO 8601 time"),
])
def test_a_producer_cannot_publish_what_its_contract_refuses(source, kind, data, error):
    with pytest.raises(EventContractError, match=re.escape(error)):
        dump_event(source, kind, envelope(source, kind, data))


def test_the_envelope_must_match_the_event():
    body = envelope("telephony", "call_missed", _call_missed())
    with pytest.raises(EventContractError, match="envelope says telephony.call_missed"):
        dump_event("telephony", "call_ended", body)
    with pytest.raises(EventContractError, match="event_id"):
        dump_event("telephony", "call_missed", {**body, "event_id": None})


def test_a_consumer_loads_through_the_schema_keeping_unknown_fields():
    body = envelope("telephony", "call_missed", _call_missed(added_later={"x": 1}))
    loaded = load_event("telephony", "call_missed", body)
    assert loaded == body
    # a handler bound to several types (notifications) names none: the envelope decides
    assert load_event("telephony", "events", body) == body


@pytest.mark.parametrize("body, bound_to, error", [
    ("nonsense", "call_missed", "not a JSON object"),
    ({"type": "call_missed", "source": "telephony", "data": {}}, "call_missed",
     "event_id: Missing data"),
    (envelope("telephony", "call_missed", {"contact_id": None}), "call_missed",
     "call: Missing data for required"),
    (envelope("telephony", "call_missed", _call_missed(call={"id": 5})), "call_missed",
     "call.id: Not a valid string"),
    (envelope("telephony", "call_ended", _call_missed()), "call_missed",
     "a call_ended event on the call_missed"),
    (envelope("telephony", "call_gone", {}), "events", "telephony.call_gone has no schema"),
])
def test_a_consumer_rejects_what_the_contract_refuses(body, bound_to, error):
    with pytest.raises(EventRejected, match=re.escape(error)):
        load_event("telephony", bound_to, body)


# --- end to end: a refused event is parked at once, with the reason ------------------------

def _publish_raw(stack, source, kind, body):
    from kombu import Connection, Exchange, Producer
    with Connection(stack.amqp_uri) as conn:
        Producer(conn.default_channel).publish(
            body, exchange=Exchange(f"{source}.events", type="topic", durable=True),
            routing_key=kind, serializer="json")


def _dead(api, queue):
    answer = api.get("/admin/dead-letters")
    assert answer.status_code == 200, answer.text
    return next(q for q in answer.json()["items"] if q["queue"] == queue)


def _wait_dead(api, queue, count, timeout=20):
    deadline = time.time() + timeout
    while _dead(api, queue)["count"] < count and time.time() < deadline:
        time.sleep(0.3)
    return _dead(api, queue)


def test_an_event_its_contract_refuses_is_dead_lettered_at_once_with_the_reason(api, stack, unique):
    from crm_common.messaging.publish import publish_event
    contact = api.post("/contacts", json={"first_name": "Refused", "last_name": unique}).json()
    timeline = "evt-telephony-call_ended--contacts.on_telephony_call_ended"
    before = _dead(api, timeline)["count"]
    # a call_ended without its call, as a buggy producer would send it
    bad = envelope("telephony", "call_ended", {"contact_id": contact["id"], "summary": unique})
    _publish_raw(stack, "telephony", "call_ended", bad)
    entry = _wait_dead(api, timeline, before + 1)
    assert entry["service"] == "contacts" and entry["count"] == before + 1
    [message] = [m for m in entry["messages"] if unique in m["body"]]
    assert message["attempts"] == 1  # parked at the first delivery: never retried
    assert "rejected by the event contract" in message["error"]
    assert f"telephony.call_ended {bad['event_id']}: call: Missing data for required field" \
        in message["error"]

    # the handler bound to several types (notifications, per source) parks it the same way
    people = "evt-tasks-events--notifications.on_tasks_events"
    before = _dead(api, people)["count"]
    _publish_raw(stack, "tasks", "task_assigned", envelope(
        "tasks", "task_assigned", {"task": {"id": f"t-{unique}", "title": 7}, "assignee_id": "u"}))
    entry = _wait_dead(api, people, before + 1)
    [message] = [m for m in entry["messages"] if f"t-{unique}" in m["body"]]
    assert message["attempts"] == 1 and "task.title: Not a valid string" in message["error"]

    # a good event on the same queue still lands on the timeline
    publish_event(stack.amqp_uri, "telephony", "call_ended",
                  {"call": {"id": f"call-{unique}"}, "contact_id": contact["id"], "summary": "ok"})
    deadline = time.time() + 10
    kinds = []
    while time.time() < deadline and "call_ended" not in kinds:
        time.sleep(0.2)
        kinds = [e["kind"] for e in api.get(f"/contacts/{contact['id']}/timeline").json()["items"]]
    assert "call_ended" in kinds
