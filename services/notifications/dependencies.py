"""The notifications service's nameko dependency beyond the common ones: the Pipeline,
the fast path from an event to its sends inside one process.

Group commit: the event handlers running at the same moment (up to NAMEKO_MAX_WORKERS)
hand their inbox entries and deliveries to one writer greenlet, which stores them with one
`insert_many(ordered=False)` per collection (on SecantusDB a document costs a fraction of
its cost alone when it comes in a batch). The unique keys still decide: an entry whose key is stored already (a
redelivered event, a restart half-way) is reported as a duplicate for that entry only, the
others of the batch are stored; any other error fails only the handlers whose entries it
hit (their event is retried, and the retry skips what was stored).

Claimed when stored: a delivery due now (not held by quiet hours, not to a contact) is
inserted already claimed by this process (status sending, a claim token, `due_at` = lease
end, attempts 1) and queued here; the sending timer (service.send_due, a nameko worker, so
a graceful stop waits for it) takes them first, sends them, records the outcome (only while
the claim is still its own) and announces delivered/failed through the outbox. That saves
the claim's three round trips and its per-document update. If the process dies before
sending, the lease runs out and the timer's worker (any replica) claims it from the
database like any due delivery; a graceful stop gives back what was not taken yet.
The local queue is bounded (2 batches): while the sender runs, a handler waits up to
HANDLER_WAIT_S for room, then stores its deliveries unclaimed (pending, due now) for the
database path, so a slow channel never holds the handlers for long and no claimed delivery
waits near its lease end (one that did is left to the database path).
"""
import logging
import time
import uuid
from datetime import timedelta

import eventlet
from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from nameko.extensions import DependencyProvider

from crm_common.config import get_settings
from crm_common.mongo import MongoStore, connect
from crm_common.timeutil import utcnow

log = logging.getLogger(__name__)

WRITE_BATCH = 200       # write requests (events) per group commit at most
HANDLER_WAIT_S = 0.5    # how long a handler waits for room in the local send queue
SEND_BUDGET_S = 5.0     # how long one run of the sending timer keeps going at most


class WriteFailed(Exception):
    """A handler's entries could not be stored (its event is retried; duplicates skipped)."""


class Pipeline(DependencyProvider):
    def __init__(self, settings):
        self.settings = settings
        self.capacity = max(2 * settings.batch, 1)

    def setup(self):
        self.requests = LightQueue()   # (inbox, deliveries, now, Event)
        self.local = LightQueue()      # (claimed delivery, monotonic claim time)
        self.in_flight = 0             # taken by the sender, outcome not recorded yet
        self.reserved = 0              # claimed in a write not yet queued
        self.sending = False           # the sending timer's worker is running
        self.stopping = False
        self.store = None

    def start(self):
        self.store = next(d for d in self.container.dependencies
                          if isinstance(d, MongoStore)).store
        self.container.spawn_managed_thread(self._write_forever)

    def stop(self):
        """Entrypoints are stopped and their workers done (the sender's last batch too):
        give back what was claimed here and not taken. The service's own MongoClient is
        being closed beside this, so a short-lived one of our own does it."""
        self.stopping = True
        left = []
        while True:
            try:
                left.append(self.local.get_nowait()[0])
            except Empty:
                break
        if not left:
            return
        settings = get_settings()
        client = connect(settings.mongo_url, "crm-notifications-stop")
        try:
            store = type(self.store)(client[self.store.db.name], settings)
            store.release_claims(left, utcnow())
            log.info("gave back %d claimed deliveries not sent", len(left))
        except Exception:  # noqa: BLE001 - their lease runs out and a worker takes them
            log.exception("could not give back %d claimed deliveries", len(left))
        finally:
            client.close()

    def get_dependency(self, worker_ctx):
        return self

    # the handlers' side
    def room(self):
        return self.capacity - self.local.qsize() - self.in_flight - self.reserved

    def write(self, inbox, deliveries, now):
        """Store one event's inbox entries and deliveries; returns (inbox, deliveries)
        newly stored. Blocks until the group commit that carries them is done."""
        if not inbox and not deliveries:
            return 0, 0
        waited = 0.0
        while (deliveries and self.sending and not self.stopping
               and self.room() < len(deliveries) and waited < HANDLER_WAIT_S):
            eventlet.sleep(0.01)
            waited += 0.01
        done = Event()
        self.requests.put((inbox, deliveries, now, done))
        return done.wait()

    def _write_forever(self):
        while True:
            batch = [self.requests.get()]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self.requests.get_nowait())
                except Empty:
                    break
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - every waiter hears of it, the loop lives
                log.exception("group write of %d events failed", len(batch))
                for *_, done in batch:
                    if not done.ready():
                        done.send_exception(WriteFailed(f"{type(exc).__name__}: {exc}"))

    def _write(self, batch):
        now = batch[-1][2]()
        token = uuid.uuid4().hex
        lease_end = now + timedelta(seconds=self.settings.lease_s)
        room = 0 if self.stopping else max(self.room(), 0)
        inbox, deliveries, owner_i, owner_d, claimed = [], [], [], [], []
        for n, (entries, docs, _, _) in enumerate(batch):
            inbox += entries
            owner_i += [n] * len(entries)
            for doc in docs:
                if room > 0 and not doc.get("contact_id") and doc["due_at"] <= now:
                    doc.update({"status": "sending", "claim": token, "due_at": lease_end,
                                "attempts": 1, "updated_at": now})
                    claimed.append(doc)
                    room -= 1
                deliveries.append(doc)
                owner_d.append(n)
        self.reserved += len(claimed)
        try:
            inbox_ok, inbox_errors = self.store.add_inbox_each(inbox)
            delivery_ok, delivery_errors = self.store.add_deliveries_each(deliveries)
        finally:
            self.reserved -= len(claimed)
        claimed_at = time.monotonic()
        for doc, stored in zip(deliveries, delivery_ok):
            if stored and doc.get("claim") == token:
                self.local.put((doc, claimed_at))
        counts = [[0, 0] for _ in batch]
        failed = {}
        for i, stored in enumerate(inbox_ok):
            counts[owner_i[i]][0] += stored
            if i in inbox_errors:
                failed[owner_i[i]] = inbox_errors[i]
        for i, stored in enumerate(delivery_ok):
            counts[owner_d[i]][1] += stored
            if i in delivery_errors:
                failed[owner_d[i]] = delivery_errors[i]
        for n, (*_, done) in enumerate(batch):
            if n in failed:
                done.send_exception(WriteFailed(failed[n]))
            else:
                done.send(tuple(counts[n]))

    # the sender's side (service.send_due)
    def send_due(self, worker):
        """Deliveries claimed when stored first, then those due in the database (the
        worker's, which records each batch's outcomes with their events); keeps going while
        either has work (up to SEND_BUDGET_S, so a graceful stop waits for one batch at most
        that long)."""
        until = time.monotonic() + SEND_BUDGET_S
        self.sending = True
        try:
            while time.monotonic() < until:
                local = self.take(self.settings.batch, wait_s=self.settings.poll_s)
                try:
                    if local:
                        worker.send_batch(local)
                finally:
                    self.finished(len(local))
                found = worker.run_once()
                if not local and not found:
                    break
        finally:
            self.sending = False

    def take(self, limit, wait_s=0.0):
        """Up to `limit` claimed deliveries (waiting up to wait_s for the first); one
        claimed so long ago that its lease could run out while it is sent is left to the
        database path (after the lease). Call finished(n) once their outcomes are stored."""
        items = []
        try:
            items.append(self.local.get(timeout=wait_s) if wait_s > 0 else self.local.get_nowait())
        except Empty:
            return []
        while len(items) < limit:
            try:
                items.append(self.local.get_nowait())
            except Empty:
                break
        fresh_after = time.monotonic() - self.settings.lease_s / 2
        batch = [doc for doc, claimed_at in items if claimed_at >= fresh_after]
        if len(batch) < len(items):
            log.warning("%d claimed deliveries waited past half their lease: left to the "
                        "database path", len(items) - len(batch))
        self.in_flight += len(batch)
        return batch

    def finished(self, count):
        self.in_flight -= count
