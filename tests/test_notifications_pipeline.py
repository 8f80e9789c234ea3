"""The fan-out's fast path (services/notifications/dependencies.py Pipeline): group commit of the
handlers' writes with insert_many(ordered=False), deliveries claimed when stored, and the
claim holder's writes. Store-level tests run on the stack's real database (SecantusDB, or
mongod with TEST_MONGO_URL); the burst test runs through the broker and the service."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from eventlet.event import Event
from pymongo.errors import BulkWriteError

from crm_common.config import load_settings
from services.notifications.dependencies import Pipeline, WriteFailed
from services.notifications.store import NotificationsStore
from tests.test_notifications import ch, make_user, publish, wait  # noqa: F401
from tests.test_notifications_webhooks import subscribe

NOW = datetime(2030, 1, 1, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(stack):
    db = stack.mongo[f"{stack.db_prefix}pipeline_{uuid.uuid4().hex[:8]}"]
    store = NotificationsStore(db, load_settings())
    store.ensure_indexes()
    yield store
    stack.mongo.drop_database(db.name)


def delivery(key=None, **fields):
    return {"key": key or uuid.uuid4().hex, "event_id": "e", "event_type": "task_due_soon",
            "channel": "webhook", "recipient": "webhook:h", "status": "pending",
            "attempts": 0, "due_at": NOW, "created_at": NOW, "updated_at": NOW, **fields}


def test_insert_many_unordered_keeps_the_others_on_duplicate_keys(store):
    """What the group commit relies on, checked on plain pymongo first (mongod does the
    same): every document of an unordered insert_many is tried, each duplicate is reported
    by its index with code 11000, the others are stored."""
    store.deliveries.insert_one(delivery("taken"))
    docs = [delivery("a"), delivery("taken"), delivery("b"), delivery("a")]
    with pytest.raises(BulkWriteError) as raised:
        store.deliveries.insert_many(docs, ordered=False)
    details = raised.value.details
    assert details["nInserted"] == 2
    assert sorted((e["index"], e["code"]) for e in details["writeErrors"]) == [(1, 11000), (3, 11000)]
    assert sorted(d["key"] for d in store.deliveries.find()) == ["a", "b", "taken"]

    # the store's form: a flag per document, errors only for what is not a duplicate
    stored, errors = store.add_deliveries_each(
        [delivery("c"), delivery("taken"), delivery("d"), delivery("c")])
    assert stored == [True, False, True, False] and errors == {}
    assert store.deliveries.count_documents({}) == 5


def test_only_the_claim_holder_records_the_outcome(store):
    docs = [delivery(status="sending", claim="mine", attempts=1,
                     due_at=NOW + timedelta(seconds=60)) for _ in range(3)]
    store.add_deliveries_each(docs)
    ids = [d["_id"] for d in docs]
    delivered = ({"status": "delivered", "delivered_at": NOW, "response": "receiver 200",
                  "last_error": None, "next_attempt_at": None, "updated_at": NOW},
                 {"due_at": "", "claim": ""})
    store.finish([(ids[0], "someone-else", *delivered)])
    assert store.get_delivery(ids[0])["status"] == "sending"  # not ours: untouched
    retry_at = NOW + timedelta(seconds=10)
    store.finish([(ids[0], "mine", *delivered), (ids[1], "mine", *delivered),
                  (ids[2], "mine", {"status": "pending", "due_at": retry_at,
                                    "next_attempt_at": retry_at, "last_error": "503",
                                    "updated_at": NOW}, {"claim": ""})])
    first, second, third = (store.get_delivery(i) for i in ids)
    assert first["status"] == second["status"] == "delivered"
    assert "claim" not in first and "due_at" not in first
    assert third["status"] == "pending" and third["last_error"] == "503"
    assert "claim" not in third and third["due_at"] == retry_at


def test_unsent_claims_given_back_are_claimed_again_as_a_first_attempt(store):
    docs = [delivery(status="sending", claim="stopping", attempts=1,
                     due_at=NOW + timedelta(seconds=60)) for _ in range(2)]
    store.add_deliveries_each(docs)
    store.release_claims(docs, NOW)
    back = list(store.deliveries.find())
    assert all(d["status"] == "pending" and d["attempts"] == 0 and "claim" not in d
               for d in back)
    claimed = store.claim_due(NOW, 10, 60, "next")
    assert sorted(d["_id"] for d in claimed) == sorted(d["_id"] for d in docs)
    assert all(d["attempts"] == 1 and d["claim"] == "next" for d in claimed)


class FakeStore:
    """Answers the pipeline's two writes as planned (a flag and an error per index)."""

    def __init__(self, inbox_errors=None, delivery_errors=None):
        self.inbox_errors = inbox_errors or {}
        self.delivery_errors = delivery_errors or {}
        self.written = []

    def add_inbox_each(self, entries):
        self.written.append(("inbox", list(entries)))
        return ([i not in self.inbox_errors for i in range(len(entries))],
                dict(self.inbox_errors))

    def add_deliveries_each(self, docs):
        self.written.append(("deliveries", list(docs)))
        return ([i not in self.delivery_errors for i in range(len(docs))],
                dict(self.delivery_errors))


def pipeline_with(store):
    pipeline = Pipeline(load_settings().notifications)
    pipeline.setup()
    pipeline.store = store
    return pipeline


def test_group_commit_claims_what_is_due_and_fails_only_the_event_hit():
    # event 0: inbox + webhook due now (claimed), a greeting to a contact (never claimed
    # here: do_not_contact is checked by the worker) and one held by quiet hours;
    # event 1: its delivery hits an error that is not a duplicate key
    store = FakeStore(delivery_errors={3: "disk full"})
    pipeline = pipeline_with(store)
    due, contact, held = delivery(), delivery(contact_id="c1"), delivery(due_at=NOW + timedelta(hours=8))
    first, second = Event(), Event()
    batch = [([{"key": "e0:u"}], [due, contact, held], lambda: NOW, first),
             ([{"key": "e1:u"}], [delivery()], lambda: NOW, second)]
    pipeline._write(batch)
    assert first.wait() == (1, 3)
    with pytest.raises(WriteFailed):
        second.wait()
    assert [kind for kind, _ in store.written] == ["inbox", "deliveries"]  # one write each
    assert due["status"] == "sending" and due["attempts"] == 1
    assert due["due_at"] == NOW + timedelta(seconds=pipeline.settings.lease_s)
    assert contact["status"] == held["status"] == "pending" and "claim" not in held
    assert [d["key"] for d in pipeline.take(10)] == [due["key"]]  # the failed one not queued


def test_a_full_send_queue_stores_the_rest_unclaimed_for_the_database_path():
    pipeline = pipeline_with(FakeStore())
    pipeline.capacity = 2
    docs = [delivery() for _ in range(3)]
    done = Event()
    pipeline._write([([], docs, lambda: NOW, done)])
    assert done.wait() == (0, 3)
    assert [d["status"] for d in docs] == ["sending", "sending", "pending"]
    assert len(pipeline.take(10)) == 2 and pipeline.room() == 0
    pipeline.finished(2)
    assert pipeline.room() == 2


def test_a_burst_with_duplicates_is_sent_once_each_from_the_fast_path(api, stack, ch, unique):
    hook, path = subscribe(api, ch, ["task_due_soon"])
    user = make_user(stack, unique)
    ids = [f"fast-{unique}-{i}" for i in range(150)]
    for event_id in ids:
        for _ in range(2):  # each event twice, back to back: often in one group commit
            publish(stack, "tasks", "task_due_soon",
                    {"task": {"id": event_id, "title": "T", "due_at": "2030-01-01T10:00:00Z"},
                     "assignee_id": user["id"], "offset_minutes": 15}, event_id=event_id)
    deliveries = stack.db("notifications")["deliveries"]
    assert wait(lambda: deliveries.count_documents(
        {"event_id": {"$in": ids}, "status": "delivered"}) == 150, timeout=60)
    assert wait(lambda: len(ch.http.to(path)) >= 150, timeout=10)
    received = [json.loads(r["body"])["event_id"] for r in ch.http.to(path)]
    assert sorted(received) == sorted(ids)  # once each
    # sent from the claim made when stored: one attempt, no claim left behind
    again = list(deliveries.find({"event_id": {"$in": ids}, "attempts": {"$ne": 1}},
                                 {"event_id": 1, "attempts": 1, "last_error": 1}))
    assert again == []
    assert deliveries.count_documents({"event_id": {"$in": ids}, "claim": {"$exists": True}}) == 0
    inbox = stack.db("notifications")["inbox"]
    assert inbox.count_documents({"user_id": user["id"]}) == 150
    api.delete(f"/webhooks/{hook['id']}")
