"""A write and its events are stored atomically, then published, then forgotten.

`Outbox(db, source, amqp_uri)` is the core, with no nameko in it (the gateway and the
fault-injection test use it as it is); `OutboxDispatcher` is the nameko dependency around it.

- `outbox.atomic(write, args)`: `write(*args)` returns `(result, events)` and runs inside one
  MongoDB multi-document transaction (`crm_common.mongo.transaction`: every store's
  collections join it, store code passes no session); the events are inserted into the
  service's `outbox` collection in the same transaction. After the commit they are
  published with publisher confirms, in order, and their records deleted before `atomic`
  returns. `later=True` (an answer someone waits on, e.g. telephony's ringing event):
  published by a background greenlet/thread after the caller has its answer, the deletes
  of records published within `outbox_forget_gather_s` gathered into one. Events are
  envelopes (`crm_common.messaging.events.envelope`) or `(event_type, data)` pairs, dumped
  through their contract (`contracts.events.dump_event`) before anything is stored.
- A process killed at any instant loses nothing: before the commit neither the write nor
  its events exist; after it the records wait in `outbox`, and the relay (a loop in every
  replica, every `outbox_relay_s`) claims due records with an atomic lease and publishes
  them, FIRST_TRY_GRACE after they were stored (the first try's time). A broker that is
  down at write time is the same case.
- A record is deleted only after the broker confirmed it, so an event may be published
  twice (a kill between the confirm and the delete; a slow first try overtaken by the
  relay): consumers are idempotent on `event_id`. The events of one write go out in order;
  after an outage, events of different writes may arrive out of order.
- The record's `_id` is the event id: an idempotent handler that announces again under the
  same id while the first copy still waits does not store it twice.
- `outbox.dispatch(events)`: events that follow no write of their own (a claimed reminder,
  an import's progress): stored, published, forgotten the same way.

Failpoints (tests only; off unless `outbox_failpoints` / CRM_OUTBOX_FAILPOINTS or
`failpoints.set()` names them): the process SIGKILLs itself at the named point, `name@n` at
its n-th passage: before_commit (a write with events done, not committed), after_commit
(not published), after_publish (one event confirmed, not deleted), relay_after_claim
(leased by the relay, not published), relay_after_publish (published, not deleted).
"""
import logging
import os
import queue
import signal
import threading
import time
from datetime import timedelta

from kombu import Exchange
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts.events import dump_event
from crm_common.config import load_settings
from crm_common.ids import new_id
from crm_common.messaging.events import envelope
from crm_common.messaging.rpc import PublishChannel, encode
from crm_common.mongo import (MongoStore, RetryTransaction, after_commit, in_chunks,
                              in_transaction, transaction)
from crm_common.timeutil import utcnow

log = logging.getLogger(__name__)

# how long the first try owns a fresh record before the relay may take it
FIRST_TRY_GRACE = timedelta(seconds=5)
LEASE = timedelta(seconds=30)
FORGET_BATCH = 200

BEFORE_COMMIT, AFTER_COMMIT, AFTER_PUBLISH = "before_commit", "after_commit", "after_publish"
RELAY_AFTER_CLAIM, RELAY_AFTER_PUBLISH = "relay_after_claim", "relay_after_publish"
FAILPOINTS = (BEFORE_COMMIT, AFTER_COMMIT, AFTER_PUBLISH, RELAY_AFTER_CLAIM, RELAY_AFTER_PUBLISH)


class Failpoints:
    """Points of the outbox path where a test has the process kill itself (SIGKILL)."""

    def __init__(self):
        self.armed = {}  # name -> the passage that kills
        self.passed = {}

    def set(self, spec):
        """"name[@n],..." (empty: off)."""
        armed = {}
        for item in filter(None, (part.strip() for part in (spec or "").split(","))):
            name, _, nth = item.partition("@")
            if name not in FAILPOINTS:
                raise ValueError(f"unknown outbox failpoint {name!r} (known: {FAILPOINTS})")
            armed[name] = int(nth or 1)
        self.armed, self.passed = armed, {}

    def hit(self, name):
        if not self.armed or name not in self.armed:
            return
        self.passed[name] = self.passed.get(name, 0) + 1
        if self.passed[name] >= self.armed[name]:
            log.warning("outbox failpoint %s: killing the process", name)
            os.kill(os.getpid(), signal.SIGKILL)


failpoints = Failpoints()


def _start_thread(func):
    threading.Thread(target=func, daemon=True, name="outbox").start()


class Outbox:
    """One service's outbox: `db` is its (joining) database, `source` the service whose
    `<source>.events` exchange the events go to. `spawn(func)` runs a background loop or
    publish (default: a daemon thread; a nameko container passes its managed threads)."""

    def __init__(self, db, source, amqp_uri, settings=None, spawn=None):
        settings = settings or load_settings()
        self.collection = db["outbox"]
        self.client = db.client
        self.source = source
        self.exchange = Exchange(f"{source}.events", type="topic", durable=True)
        # confirmed, persistent, tried once more on a fresh connection (messaging.rpc)
        self.channel = PublishChannel(amqp_uri, confirms=True)
        self.spawn = spawn or _start_thread
        self.relay_s = settings.outbox_relay_s
        self.gather_s = settings.outbox_forget_gather_s
        if settings.outbox_failpoints:
            failpoints.set(settings.outbox_failpoints)
        self.published = queue.Queue()  # ids published, deleted in batches by the forget loop
        self._gathering = None  # the id the forget loop holds while the next ones gather
        self._forgetting = False

    def start(self, relay=True):
        """The index, the forget loop and (unless relay=False) the relay loop."""
        self.ensure_index()
        self._forgetting = True
        self.spawn(self._forget_forever)
        if relay:
            self.spawn(self._relay_forever)

    def ensure_index(self):
        """(relay_after, _id): the relay's range of due records and its claim of one (every
        predicate in one index: SecantusDB scans otherwise)."""
        self.collection.create_index([("relay_after", ASCENDING), ("_id", ASCENDING)])
        if "relay_after_1" in self.collection.index_information():
            self.collection.drop_index("relay_after_1")  # the index it replaces

    def stop(self):
        # what is left would only be published twice by the relay
        first, self._gathering = self._gathering, None
        self._forget_published(first)
        self.channel.close()

    # storing
    def record(self, event, headers=None):
        """The outbox record of an event (an envelope or an (event_type, data) pair)."""
        if not isinstance(event, dict):
            event = envelope(self.source, *event)
        body = dump_event(self.source, event["type"], event)
        now = utcnow()
        return {"_id": body.get("event_id") or new_id(), "type": body["type"], "body": body,
                "headers": headers or {}, "created_at": now,
                "relay_after": now + FIRST_TRY_GRACE, "attempts": 0}

    def atomic(self, write, args=(), kwargs=None, headers=None, later=False):
        """`write(*args, **kwargs)` -> (result, events), stored in one transaction, then
        published (now, or after the caller's answer with later=True); returns result."""
        joined = in_transaction()  # inside someone's transaction: published after it commits
        met_stored = []  # set when a try found one of its event ids still waiting

        def write_and_store():
            result, events = write(*args, **(kwargs or {}))
            records = [self.record(event, headers) for event in events or ()]
            records = self._store_within(records, careful=joined or bool(met_stored),
                                         met=met_stored)
            if records:
                failpoints.hit(BEFORE_COMMIT)
            return result, records

        if joined:
            result, records = write_and_store()
            after_commit(self._publish_stored, records, later)
            return result
        result, records = transaction(self.client, write_and_store)
        if records:
            failpoints.hit(AFTER_COMMIT)
        self._publish_stored(records, later)
        return result

    def _store_within(self, records, careful, met):
        """Inserted in the open transaction; a record whose id is still stored (an
        idempotent handler announcing again) is left to whoever holds that one. A duplicate
        key aborts a transaction, so the first try just inserts and the rare collision
        runs the write again, carefully."""
        if not records:
            return records
        if careful:
            ids = [r["_id"] for r in records]
            stored = {d["_id"] for d in self.collection.find({"_id": {"$in": ids}}, {"_id": 1})}
            records = [r for r in records if r["_id"] not in stored]
            if not records:
                return records
        try:
            self._insert(records)
        except (DuplicateKeyError, BulkWriteError) as exc:
            if not _duplicate_only(exc):
                raise
            met.append(True)
            raise RetryTransaction() from exc
        return records

    def _insert(self, records):
        if len(records) == 1:
            self.collection.insert_one(records[0])
        else:
            self.collection.insert_many(records)

    def dispatch(self, events, headers=None, later=False):
        """Events that follow no write of their own: stored (one insert; an id still
        waiting is not stored twice), then published and forgotten like a write's."""
        records = [self.record(event, headers) for event in events]
        if not records:
            return
        if in_transaction():
            self.atomic(lambda: (None, events), headers=headers, later=later)
            return
        try:
            self.collection.insert_many(records, ordered=False)
        except BulkWriteError as exc:
            if not _duplicate_only(exc):
                raise
            failed = {e["index"] for e in exc.details.get("writeErrors", [])}
            records = [r for i, r in enumerate(records) if i not in failed]
        self._publish_stored(records, later)

    # publishing
    def _publish_stored(self, records, later=False):
        """Now: published and deleted before this returns. Later: published by a
        background greenlet/thread, the deletes gathered into batches."""
        if not records:
            return
        if later:
            self.spawn(lambda: self._publish_in_order(records, batched=True))
        else:
            self._publish_in_order(records, batched=False)

    def _publish_in_order(self, records, batched):
        """Stops at the first failure: the relay publishes the rest once the broker is back."""
        published = []
        for record in records:
            if not self._publish(record):
                break
            failpoints.hit(AFTER_PUBLISH)
            published.append(record["_id"])
        if batched:
            for record_id in published:
                self._forget(record_id)
        else:
            self._delete(published)

    def _publish(self, record):
        try:
            # what nameko's Publisher sent: the body as JSON, the context in the headers
            content_type, encoding, body = encode(record["body"], "json")
            self.channel.publish(self.exchange.name, record["type"], body,
                                 content_type, encoding, headers=record.get("headers") or {},
                                 persistent=True, declare=self.exchange)
        except Exception as exc:  # noqa: BLE001 - the relay retries whatever failed here
            log.warning("event %s kept in the outbox (%s: %s)", record["type"],
                        type(exc).__name__, exc)
            return False
        return True

    # forgetting
    def _delete(self, ids):
        try:  # in lists of 50: on SecantusDB one $in costs values x matches (crm_common.mongo)
            if len(ids) == 1:
                self.collection.delete_one({"_id": ids[0]})
            else:
                for chunk in in_chunks(ids):
                    self.collection.delete_many({"_id": {"$in": chunk}})
        except Exception:  # noqa: BLE001 - left records are published again (a duplicate, never a loss)
            log.exception("could not delete %d published outbox records", len(ids))

    def _forget(self, record_id):
        if self._forgetting:
            self.published.put(record_id)
        else:  # no forget loop (a script, a test): at once
            self._delete([record_id])

    def _forget_forever(self):
        while True:
            self._forget_next()

    def _forget_next(self):
        """One round: the next published id, and those published within gather_s after
        it, deleted together. The id held while gathering is where stop() finds it (else a
        stop in that moment would leave it to be published again)."""
        self._gathering = self.published.get()
        time.sleep(self.gather_s)
        first, self._gathering = self._gathering, None
        if first is not None:
            self._forget_published(first)

    def _forget_published(self, first=None):
        ids = [] if first is None else [first]
        while len(ids) < FORGET_BATCH:
            try:
                ids.append(self.published.get_nowait())
            except queue.Empty:
                break
        if ids:
            self._delete(ids)

    # the relay
    def relay_once(self, limit=200, now=None):
        """Publish due records (due as of `now`, default now); returns how many went out.
        Each is claimed first with a lease (a compare-and-set on the relay_after read, so of
        two relays one takes it), published, then deleted. Not find_one_and_update: on
        SecantusDB that scans the whole collection for an existing document (see
        crm_common.mongo.update_and_get), which a backlog makes quadratic."""
        sent = 0
        due = list(self.collection.find({"relay_after": {"$lte": now or utcnow()}})
                   .sort([("relay_after", ASCENDING), ("_id", ASCENDING)]).limit(limit))
        for record in due:
            claimed = self.collection.update_one(
                {"relay_after": record["relay_after"], "_id": record["_id"]},
                {"$set": {"relay_after": utcnow() + LEASE}, "$inc": {"attempts": 1}})
            if not claimed.modified_count:
                continue  # another relay took it, or its first try deleted it
            failpoints.hit(RELAY_AFTER_CLAIM)
            if not self._publish(record):
                # broker still down: give the record back for the next tick
                self.collection.update_one({"_id": record["_id"]},
                                           {"$set": {"relay_after": utcnow()}})
                break
            failpoints.hit(RELAY_AFTER_PUBLISH)
            self.collection.delete_one({"_id": record["_id"]})
            sent += 1
        return sent

    def backlog(self):
        return self.collection.estimated_document_count()

    def _relay_forever(self):
        while True:
            time.sleep(self.relay_s)
            try:
                if self.relay_once():
                    log.info("outbox relay published pending events")
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the relay
                log.exception("outbox relay failed; retrying")


def _duplicate_only(exc):
    if isinstance(exc, DuplicateKeyError):
        return True
    errors = (exc.details or {}).get("writeErrors") or []
    return bool(errors) and all(e.get("code") == 11000 for e in errors)


class OutboxDispatcher(DependencyProvider):
    """The service's Outbox (on the database of its first MongoStore); a worker gets
    `self.dispatch`: `.atomic(write, *args)`, `.after_reply(write, *args)` and
    `(event_type, body)` for an event that follows no write."""

    outbox = None

    def setup(self):
        self.settings = load_settings()
        self.amqp_uri = self.settings.events_amqp_uri or self.container.config["AMQP_URI"]

    def start(self):
        stores = [d for d in self.container.dependencies if isinstance(d, MongoStore)]
        self.outbox = Outbox(stores[0].store.db, self.container.service_name, self.amqp_uri,
                             self.settings, spawn=self.container.spawn_managed_thread)
        self.outbox.start()

    def stop(self):
        if self.outbox is not None:
            self.outbox.stop()

    @property
    def collection(self):
        return self.outbox.collection if self.outbox is not None else None

    def backlog(self):
        return self.outbox.backlog()

    def get_dependency(self, worker_ctx):
        return _Dispatch(self.outbox, context_headers(worker_ctx.context_data))


def context_headers(context_data):
    """A worker's context as the `nameko.<key>` headers its events carry (None and
    non-scalar values dropped)."""
    return {f"nameko.{k}": v for k, v in (context_data or {}).items()
            if v is not None and isinstance(v, (str, int, float, bool, list))}


class _Dispatch:
    """What a worker gets as `self.dispatch`."""

    def __init__(self, outbox, headers):
        self.outbox = outbox
        self.headers = headers

    def with_context(self, context_data):
        """This dispatch carrying another context (one event's of a batch worker's)."""
        return _Dispatch(self.outbox, context_headers(context_data))

    def atomic(self, write, *args, **kwargs):
        """`write(*args, **kwargs)` -> (result, events): one transaction, then published
        before it returns (a record stays for the relay if publishing failed)."""
        return self.outbox.atomic(write, args, kwargs, headers=self.headers)

    def after_reply(self, write, *args, **kwargs):
        """The same, published in the background: the caller's answer does not wait for
        the broker's confirms."""
        return self.outbox.atomic(write, args, kwargs, headers=self.headers, later=True)

    def __call__(self, event_type, body):
        """One event that follows no write of its own."""
        self.outbox.dispatch([body if isinstance(body, dict) else (event_type, body)],
                             headers=self.headers)
