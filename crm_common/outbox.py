"""Events that follow a database write are never lost: a transactional-outbox dispatcher.

`dispatch = OutboxDispatcher()` is a drop-in for nameko's EventDispatcher (same call:
`self.dispatch(event_type, body)`), with one difference: the event is first stored in the
service's own `outbox` collection, then published with publisher confirms and deleted.
If the broker is down at that moment the record stays, and a relay thread in every replica
claims due records with an atomic lease and publishes them when the broker is back.
Duplicates are possible (a crash between publish and delete), loss is not; every handler is
idempotent. Events of one service may be delivered out of order after an outage.

`CRM_EVENTS_AMQP_URI` (default: `AMQP_URI`) is where events are published.
"""
import logging
import os
import time
from datetime import timedelta

import eventlet
from nameko.amqp.publish import Publisher
from nameko.events import get_event_exchange
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, ReturnDocument

from crm_common.mongo import MongoStore
from crm_common.timeutil import utcnow

log = logging.getLogger(__name__)

RELAY_INTERVAL = float(os.environ.get("CRM_OUTBOX_RELAY_SECONDS", "1"))
# how long the immediate publish owns a fresh record before the relay may take it
FIRST_TRY_GRACE = timedelta(seconds=5)
LEASE = timedelta(seconds=30)
RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


class OutboxDispatcher(DependencyProvider):
    def setup(self):
        config = self.container.config
        self.amqp_uri = os.environ.get("CRM_EVENTS_AMQP_URI") or config["AMQP_URI"]
        self.exchange = get_event_exchange(self.container.service_name, config)
        self.publisher = Publisher(self.amqp_uri, use_confirms=True, serializer="json",
                                   delivery_mode=2, declare=[self.exchange],
                                   retry=True, retry_policy=RETRY)
        self.collection = None

    def start(self):
        stores = [d for d in self.container.dependencies if isinstance(d, MongoStore)]
        self.collection = stores[0].store.db["outbox"]
        self.collection.create_index([("relay_after", ASCENDING)])
        self.container.spawn_managed_thread(self._relay_forever)

    def get_dependency(self, worker_ctx):
        headers = {f"nameko.{k}": v for k, v in worker_ctx.context_data.items()
                   if v is not None and isinstance(v, (str, int, float, bool, list))}

        def dispatch(event_type, body):
            record = {"_id": body.get("event_id") if isinstance(body, dict) else None,
                      "type": event_type, "body": body, "headers": headers,
                      "created_at": utcnow(), "relay_after": utcnow() + FIRST_TRY_GRACE,
                      "attempts": 0}
            if record["_id"] is None:
                del record["_id"]
            self.collection.insert_one(record)
            self._publish_and_forget(record)

        return dispatch

    def _publish_and_forget(self, record):
        try:
            self.publisher.publish(record["body"], exchange=self.exchange,
                                   routing_key=record["type"], extra_headers=record["headers"])
        except Exception as exc:  # noqa: BLE001 - the relay retries whatever failed here
            log.warning("event %s kept in the outbox (%s: %s)", record["type"],
                        type(exc).__name__, exc)
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
