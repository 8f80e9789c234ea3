"""Events that follow a database write are never lost: a transactional-outbox dispatcher.

`dispatch = OutboxDispatcher()` is a drop-in for nameko's EventDispatcher (same call:
`self.dispatch(event_type, body)`), with one difference: the event is first stored in the
service's own `outbox` collection, then published with publisher confirms and deleted.
If the broker is down at that moment the record stays, and a relay thread in every replica
claims due records with an atomic lease and publishes them when the broker is back.
Duplicates are possible (a crash between publish and delete), loss is not; every handler is
idempotent. Events of one service may be delivered out of order after an outage.

`self.dispatch.after_reply([(event_type, body), ...])` is for an answer someone waits on
(telephony's ringing event): the records are stored before it returns (one insert), and
published and deleted by a background greenlet, deletes batched; if the process dies
first, the relay publishes them after FIRST_TRY_GRACE, as for a broker outage.

`CRM_EVENTS_AMQP_URI` (default: `AMQP_URI`) is where events are published.
"""
import logging
import os
import time
from datetime import timedelta

import eventlet
from eventlet.queue import Empty, LightQueue
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, ReturnDocument

from contracts.events import dump_event
from crm_common.mongo import MongoStore, in_chunks
from crm_common.messaging.rpc import PublishChannel, encode
from crm_common.timeutil import utcnow

log = logging.getLogger(__name__)

RELAY_INTERVAL = float(os.environ.get("CRM_OUTBOX_RELAY_SECONDS", "1"))
# how long the immediate publish owns a fresh record before the relay may take it
FIRST_TRY_GRACE = timedelta(seconds=5)
LEASE = timedelta(seconds=30)
FORGET_BATCH = 200
# how long the deletes of published records gather before one delete_many: at 50 ringing
# events/s the forget loop otherwise woke for each id (~0.9 deletes per event); the relay
# leaves a record alone for FIRST_TRY_GRACE, so a record deleted this much later is harmless
FORGET_GATHER_S = float(os.environ.get("CRM_OUTBOX_FORGET_GATHER_SECONDS", "0.25"))


class OutboxDispatcher(DependencyProvider):
    def setup(self):
        config = self.container.config
        self.amqp_uri = os.environ.get("CRM_EVENTS_AMQP_URI") or config["AMQP_URI"]
        self.exchange = get_event_exchange(self.container.service_name, config)
        # confirmed, persistent, tried once more on a fresh connection (crm_common.messaging.rpc)
        self.channel = PublishChannel(self.amqp_uri, confirms=True)
        self.collection = None
        self.published = LightQueue()  # ids published by after_reply, to delete in batches
        self._gathering = None  # the id the forget loop holds while the next ones gather

    def start(self):
        stores = [d for d in self.container.dependencies if isinstance(d, MongoStore)]
        self.collection = stores[0].store.db["outbox"]
        self.collection.create_index([("relay_after", ASCENDING)])
        self.container.spawn_managed_thread(self._relay_forever)
        self.container.spawn_managed_thread(self._forget_forever)

    def stop(self):
        # what is left would only be published twice by the relay
        first, self._gathering = self._gathering, None
        self._forget_published(first)
        self.channel.close()

    def get_dependency(self, worker_ctx):
        headers = {f"nameko.{k}": v for k, v in worker_ctx.context_data.items()
                   if v is not None and isinstance(v, (str, int, float, bool, list))}
        return _Dispatch(self, headers)

    def _record(self, event_type, body, headers):
        body = dump_event(self.container.service_name, event_type, body)
        now = utcnow()
        record = {"_id": body.get("event_id") if isinstance(body, dict) else None,
                  "type": event_type, "body": body, "headers": headers,
                  "created_at": now, "relay_after": now + FIRST_TRY_GRACE, "attempts": 0}
        if record["_id"] is None:
            del record["_id"]
        return record

    def _store(self, records):
        if len(records) == 1:
            self.collection.insert_one(records[0])
        elif records:
            self.collection.insert_many(records)

    def _publish_stored(self, records):
        """Background: publish stored records in order; the deletes go to the batcher.
        Stops at the first failure: the relay publishes the rest once the broker is back."""
        for record in records:
            if not self._publish(record):
                return
            self.published.put(record["_id"])

    def _forget_forever(self):
        while True:
            self._forget_next()

    def _forget_next(self):
        """One round: the next published id, and those published within FORGET_GATHER_S
        after it, deleted together (lists of 50). The id held while gathering is where
        stop() finds it (else a stop in that moment would leave it to be published again)."""
        self._gathering = self.published.get()
        eventlet.sleep(FORGET_GATHER_S)
        first, self._gathering = self._gathering, None
        if first is not None:
            self._forget_published(first)

    def _forget_published(self, first=None):
        ids = [] if first is None else [first]
        while len(ids) < FORGET_BATCH:
            try:
                ids.append(self.published.get_nowait())
            except Empty:
                break
        if not ids:
            return
        try:  # in lists of 50: on SecantusDB one $in costs values x matches (crm_common.mongo)
            for chunk in in_chunks(ids):
                self.collection.delete_many({"_id": {"$in": chunk}})
        except Exception:  # noqa: BLE001 - left records are published again (a duplicate, never a loss)
            log.exception("could not delete %d published outbox records", len(ids))

    def _publish(self, record):
        try:
            # what nameko's Publisher sent: the body as JSON, the context in the headers
            content_type, encoding, body = encode(record["body"], "json")
            self.channel.publish(self.exchange.name, record["type"], body,
                                 content_type, encoding, headers=record["headers"],
                                 persistent=True, declare=self.exchange)
        except Exception as exc:  # noqa: BLE001 - the relay retries whatever failed here
            log.warning("event %s kept in the outbox (%s: %s)", record["type"],
                        type(exc).__name__, exc)
            return False
        return True

    def _publish_and_forget(self, record):
        if not self._publish(record):
            return False
        self.collection.delete_one({"_id": record["_id"]})
        return True

    def relay_once(self, limit=200):
        """Publish due records; returns how many went out."""
        sent = 0
        for _ in range(limit):
            now = utcnow()
            record = self.collection.find_one_and_update(
                {"relay_after": {"$lte": now}},
                {"$set": {"relay_after": now + LEASE}, "$inc": {"attempts": 1}},
                sort=[("relay_after", ASCENDING)], return_document=ReturnDocument.AFTER)
            if record is None:
                break
            if not self._publish_and_forget(record):
                # broker still down: give the record back for the next tick
                self.collection.update_one({"_id": record["_id"]},
                                           {"$set": {"relay_after": utcnow()}})
                break
            sent += 1
        return sent

    def backlog(self):
        return self.collection.estimated_document_count()

    def _relay_forever(self):
        while True:
            eventlet.sleep(RELAY_INTERVAL)
            try:
                if self.relay_once():
                    log.info("outbox relay published pending events")
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the relay
                log.exception("outbox relay failed; retrying")
                time.sleep(0)


class _Dispatch:
    """What a worker gets as `self.dispatch`."""

    def __init__(self, outbox, headers):
        self.outbox = outbox
        self.headers = headers

    def __call__(self, event_type, body):
        """Stored, published and deleted before it returns (the record stays if publishing
        failed, for the relay)."""
        record = self.outbox._record(event_type, body, self.headers)
        self.outbox.collection.insert_one(record)
        self.outbox._publish_and_forget(record)

    def after_reply(self, events):
        """[(event_type, body), ...] stored now in one round trip; published in the
        background, so the caller's answer does not wait for the broker's confirms."""
        records = [self.outbox._record(t, b, self.headers) for t, b in events]
        if not records:
            return
        self.outbox._store(records)
        self.outbox.container.spawn_managed_thread(
            lambda: self.outbox._publish_stored(records))
