"""Events: one envelope for every fact, and handlers that can never requeue forever.

Every event body is {"event_id", "type", "source", "occurred_at", "data"}; handlers are
idempotent on `event_id` because delivery is at least once.

`reliable_handler` (use it instead of nameko's event_handler):
- a failed message is republished to its queue with `x-crm-attempts` and
  `x-crm-last-error` headers and the original acked; after `CRM_EVENT_MAX_ATTEMPTS`
  attempts it is parked in `dead.<queue>` (exchange `crm.dead-letter`) with the error, for
  an admin to see and replay (`DeadLetters`, exposed by every service's health RPCs);
- a message that comes back `redelivered` (its consumer died before acking it, e.g. the
  process crashed on it) counts as a failed attempt too, so a message that kills its
  process cannot loop forever either.
Queues are classic durable queues: quorum queues (with a broker-side delivery limit) were
tried and made vhost creation/deletion hang on a loaded single node.
"""
import logging

import traceback

from kombu import Connection, Exchange, Queue, binding
from nameko.amqp.publish import Publisher
from nameko.events import EventHandler, get_event_exchange
from nameko.extensions import DependencyProvider

from contracts.events import EventRejected, load_event
from crm_common.config import load_settings
from crm_common.messaging.rpc import CONNECTION_ERRORS
from crm_common.ids import new_id
from crm_common.timeutil import to_iso, utcnow

log = logging.getLogger(__name__)

DEAD_LETTER_EXCHANGE = "crm.dead-letter"
ATTEMPTS_HEADER = "x-crm-attempts"
ERROR_HEADER = "x-crm-last-error"


def envelope(source, event_type, data, event_id=None):
    return {"event_id": event_id or new_id(), "type": event_type, "source": source,
            "occurred_at": to_iso(utcnow()), "data": data}


def dead_letter_queue_name(queue_name):
    return f"dead.{queue_name}"


def dead_letter_exchange():
    return Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True)


class ReliableEventHandler(EventHandler):
    def __init__(self, source_service, event_type, **kwargs):
        kwargs["requeue_on_error"] = True
        super().__init__(source_service, event_type, **kwargs)

    def setup(self):
        super().setup()
        self.max_attempts = max(load_settings().event_max_attempts, 1)
        name = self.queue.name
        # a message rejected without requeue still lands in dead.<queue>
        self.queue.queue_arguments = {
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": name,
        }
        amqp_uri = self.container.config["AMQP_URI"]
        declare_dead_letter_queue(amqp_uri, name)
        self.publisher = Publisher(amqp_uri, use_confirms=True, serializer="json",
                                   delivery_mode=2)

    def handle_message(self, body, message):
        if message.delivery_info.get("redelivered"):
            # its last consumer died holding it: count that as a failed attempt
            self._retry_or_park(message, "redelivered: the previous consumer died while handling it")
            return
        try:
            body = load_event(self.source_service, self.event_type, body)
        except EventRejected as exc:
            # retrying cannot mend a body its contract refuses: park it at once
            self._retry_or_park(message, f"rejected by the event contract: {exc}", park=True)
            return
        super().handle_message(body, message)

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is None:
            try:
                self.queue_consumer.ack_message(message)
            except CONNECTION_ERRORS as exc:
                # the broker went away: it redelivers the message, and handlers are idempotent
                log.warning("ack of %s lost: %s", self.queue.name, exc)
            return
        error = "".join(traceback.format_exception_only(exc_info[0], exc_info[1])).strip()[:2000]
        self._retry_or_park(message, error)

    def _retry_or_park(self, message, error, park=False):
        attempts = int((message.headers or {}).get(ATTEMPTS_HEADER, 0)) + 1
        headers = dict(message.headers or {}, **{ATTEMPTS_HEADER: attempts, ERROR_HEADER: error})
        try:
            if attempts < self.max_attempts and not park:
                # back of its own queue, carrying how often it failed and why
                self.publisher.publish(message.payload, exchange="", routing_key=self.queue.name,
                                       headers=headers)
            else:
                log.error("dead-lettering %s after %d attempts: %s", self.queue.name, attempts, error)
                self.publisher.publish(message.payload, exchange=dead_letter_exchange(),
                                       routing_key=self.queue.name, headers=headers)
        except Exception:  # noqa: BLE001 - cannot republish: let the broker redeliver it
            log.exception("could not republish a failed message of %s", self.queue.name)
            try:
                self.queue_consumer.requeue_message(message)
            except CONNECTION_ERRORS:
                pass  # the connection is gone: the broker redelivers it anyway
            return
        try:
            self.queue_consumer.ack_message(message)
        except CONNECTION_ERRORS as exc:
            log.warning("ack of %s lost: %s", self.queue.name, exc)


def declare_dead_letter_queue(amqp_uri, queue_name):
    queue = Queue(dead_letter_queue_name(queue_name), exchange=dead_letter_exchange(),
                  routing_key=queue_name, durable=True)
    with Connection(amqp_uri) as conn:
        queue.bind(conn.default_channel).declare()


reliable_handler = ReliableEventHandler.decorator


class SourceEventHandler(ReliableEventHandler):
    """One reliable queue per source service instead of one per event type, for a service
    that listens to many types: a durable queue (and dead-letter queue) per type is broker
    load for nothing. The queue is bound to each wanted type on `<source>.events`; failed
    messages go back to the queue by its name, so the bindings do not matter for them."""

    def __init__(self, source_service, event_types, **kwargs):
        # the name part of the queue ("evt-<source>-events--<service>.<method>")
        super().__init__(source_service, "events", **kwargs)
        self.event_types = tuple(sorted(event_types))

    def setup(self):
        super().setup()
        self.queue.bindings = {binding(self.queue.exchange, routing_key=event_type)
                               for event_type in self.event_types}


source_handler = SourceEventHandler.decorator


def event_exchange(service, config):
    return get_event_exchange(service, config)


class DeadLetters(DependencyProvider):
    """Lets a service's admin RPCs see and replay the dead letters of its own handlers."""

    queues = None

    def get_dependency(self, worker_ctx):
        if self.queues is None:  # the entrypoints are fixed: list their queues once
            self.queues = sorted({ext.queue.name for ext in self.container.entrypoints
                                  if isinstance(ext, ReliableEventHandler)})
        return DeadLetterAdmin(self.container.config["AMQP_URI"], self.queues)


class DeadLetterAdmin:
    def __init__(self, amqp_uri, queues):
        self.amqp_uri = amqp_uri
        self.queues = queues

    def summary(self, peek=5):
        out = []
        with Connection(self.amqp_uri) as conn:
            for queue in self.queues:
                channel = conn.channel()  # one per queue: peeking closes it
                dead = dead_letter_queue_name(queue)
                _, count, _ = channel.queue_declare(dead, passive=True)
                out.append({"queue": queue, "dead_letter_queue": dead, "count": count,
                            "messages": self._peek(channel, dead, min(peek, count))})
        return out

    @staticmethod
    def _peek(channel, queue, n):
        """Read up to n messages and put them all back (unacked until the channel closes)."""
        seen = []
        for _ in range(n):
            message = channel.basic_get(queue, no_ack=False)
            if message is None:
                break
            headers = message.properties.get("application_headers") or {}
            body = message.body
            if isinstance(body, bytes):
                body = body.decode("utf-8", "replace")
            seen.append({"body": body[:4000],
                         "attempts": headers.get(ATTEMPTS_HEADER),
                         "error": headers.get(ERROR_HEADER),
                         "x_death": str(headers.get("x-death", ""))[:500] or None})
        channel.close()  # returns every message read above to its queue, in order
        return seen

    def replay(self, queue=None):
        """Move dead letters back to their queues for another round of attempts."""
        moved = {}
        for name in ([queue] if queue else self.queues):
            if name not in self.queues:
                continue
            moved[name] = 0
            with Connection(self.amqp_uri) as conn:
                channel = conn.channel()
                while True:
                    message = channel.basic_get(dead_letter_queue_name(name), no_ack=False)
                    if message is None:
                        break
                    headers = dict(message.properties.get("application_headers") or {})
                    headers.pop(ATTEMPTS_HEADER, None)
                    headers.pop("x-death", None)
                    channel.basic_publish(
                        type(message)(message.body, application_headers=headers,
                                      content_type=message.properties.get("content_type"),
                                      content_encoding=message.properties.get("content_encoding"),
                                      delivery_mode=2),
                        exchange="", routing_key=name)
                    channel.basic_ack(message.delivery_tag)
                    moved[name] += 1
        return moved



