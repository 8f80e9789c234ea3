"""The sending worker: claims due deliveries from the outbox, sends them concurrently (a slow
or down channel only holds its own sends), and records each outcome:
delivered; Retryable -> pending again after exponential backoff, until max attempts;
Permanent (or out of attempts) -> failed with the reason. Nothing is retried forever."""
import logging
import uuid
from datetime import timedelta

import eventlet
import requests
from requests.adapters import HTTPAdapter

from services.notifications.channels import SENDERS, DeliveryError, Permanent, Retryable

log = logging.getLogger(__name__)

_http = None


def http_session(pool_size):
    """One keep-alive HTTP session per process, with a pool as large as the concurrency."""
    global _http
    if _http is None:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=50, pool_maxsize=pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _http = session
    return _http


def backoff(settings, attempts):
    return min(settings.backoff_s * (2 ** max(attempts - 1, 0)), settings.backoff_max_s)


class Worker:
    def __init__(self, store, settings, now, contact_lookup, record=None):
        self.store = store
        self.settings = settings
        self.now = now
        self.contact_lookup = contact_lookup
        # record(outcomes, events): the outcomes written with their events (the service
        # passes its outbox transaction); by default the outcomes alone
        self.record = record or (lambda outcomes, events: store.finish(outcomes))

    def run_once(self):
        """Claim due deliveries from the database and send them; returns the events to
        announce (notification_delivered/failed)."""
        now = self.now()
        token = uuid.uuid4().hex
        batch = self.store.claim_due(now, self.settings.batch, self.settings.lease_s, token)
        if not batch:
            return []
        return self.send_batch(batch)

    def send_batch(self, batch):
        """Send claimed deliveries (each carries its `claim` token) concurrently and record
        each outcome while the claim is still ours; returns the events to announce."""
        hooks = self.store.webhooks_by_ids({d["webhook_id"] for d in batch if d.get("webhook_id")})
        for delivery in batch:
            if delivery.get("webhook_id"):
                delivery["webhook"] = hooks.get(delivery["webhook_id"])
        blocked = self._do_not_contact(batch)
        http = http_session(self.settings.concurrency)
        pool = eventlet.GreenPool(self.settings.concurrency)
        results = list(pool.imap(lambda d: self._send(d, http, blocked), batch))
        outcomes, events = [], []
        done = self.now()
        for delivery, (status, note) in zip(batch, results):
            changes, unset = self._outcome(delivery, status, note, done)
            outcomes.append((delivery["_id"], delivery["claim"], changes, unset))
            if changes["status"] in ("delivered", "failed"):
                events.append(self._event(delivery, changes))
        self.record(outcomes, events)
        return events

    def _send(self, delivery, http, blocked):
        if delivery["_id"] in blocked:
            return "permanent", "the contact does not want to be contacted (do_not_contact)"
        sender = SENDERS.get(delivery["channel"])
        if sender is None:
            return "permanent", f"unknown channel {delivery['channel']}"
        try:
            with eventlet.Timeout(self.settings.send_timeout_s * 2, Retryable("send timed out")):
                return "ok", sender(delivery, self.settings, http)
        except Permanent as exc:
            return "permanent", exc.reason
        except DeliveryError as exc:
            return "retry", exc.reason
        except Exception as exc:  # noqa: BLE001 - a bug in one send must not lose the batch
            log.exception("sending delivery %s failed", delivery["_id"])
            return "retry", f"internal error: {exc}"

    def _do_not_contact(self, batch):
        """Messages to contacts are checked against the contact itself right before sending."""
        blocked = set()
        for delivery in batch:
            if delivery.get("contact_id"):
                if self.contact_lookup is None:  # the fast path never carries these
                    blocked.add(delivery["_id"])
                    continue
                try:
                    contact = self.contact_lookup(delivery["contact_id"])
                except Exception as exc:  # noqa: BLE001 - unknown/deleted contact: never send
                    log.info("contact %s unavailable: %s", delivery["contact_id"], exc)
                    contact = None
                if not contact or contact.get("do_not_contact"):
                    blocked.add(delivery["_id"])
        return blocked

    def _outcome(self, delivery, status, note, now):
        attempts = delivery.get("attempts", 1)
        if status == "ok":
            return ({"status": "delivered", "delivered_at": now, "response": note,
                     "last_error": None, "next_attempt_at": None, "updated_at": now},
                    {"due_at": "", "claim": ""})
        if status == "retry" and attempts < self.settings.max_attempts:
            when = now + timedelta(seconds=backoff(self.settings, attempts))
            return ({"status": "pending", "due_at": when, "next_attempt_at": when,
                     "last_error": note, "updated_at": now}, {"claim": ""})
        return ({"status": "failed", "failed_at": now, "last_error": note,
                 "next_attempt_at": None, "updated_at": now}, {"due_at": "", "claim": ""})

    @staticmethod
    def _event(delivery, changes):
        data = {"notification_id": delivery["_id"], "channel": delivery["channel"],
                "recipient": delivery["recipient"], "event_type": delivery["event_type"],
                "event_id": delivery["event_id"], "attempts": delivery.get("attempts")}
        if delivery.get("webhook_id"):
            data["webhook_id"] = delivery["webhook_id"]
        if changes["status"] == "failed":
            data["reason"] = changes["last_error"]
            return "notification_failed", data
        return "notification_delivered", data
