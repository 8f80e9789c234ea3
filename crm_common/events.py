"""Events: one envelope for every fact, and handlers that can never requeue forever.

Every event body is {"event_id", "type", "source", "occurred_at", "data"}; handlers are
idempotent on `event_id` because delivery is at least once.

`reliable_handler` declares its queue as a quorum queue with a delivery limit and a dead
letter exchange: a handler that keeps failing is retried `CRM_EVENT_MAX_ATTEMPTS` times,
then its message is parked in `dead.<queue>` with RabbitMQ's x-death history, instead of
the plain nameko behaviour (acked and lost, or requeued forever).
"""
import logging

from kombu import Connection, Exchange, Queue
from nameko.events import EventHandler, get_event_exchange

from crm_common.config import load_settings
from crm_common.ids import new_id
from crm_common.timeutil import to_iso, utcnow

log = logging.getLogger(__name__)

DEAD_LETTER_EXCHANGE = "crm.dead-letter"


def envelope(source, event_type, data, event_id=None):
    return {"event_id": event_id or new_id(), "type": event_type, "source": source,
            "occurred_at": to_iso(utcnow()), "data": data}


def dead_letter_queue_name(queue_name):
    return f"dead.{queue_name}"


class ReliableEventHandler(EventHandler):
    def __init__(self, source_service, event_type, **kwargs):
        kwargs["requeue_on_error"] = True
        super().__init__(source_service, event_type, **kwargs)

    def setup(self):
        super().setup()
        settings = load_settings()
        name = self.queue.name
        self.queue.queue_arguments = {
            "x-queue-type": "quorum",
            # deliveries beyond the first that may fail before the message is dead-lettered
            "x-delivery-limit": max(settings.event_max_attempts - 1, 0),
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": name,
        }
        declare_dead_letter_queue(self.container.config["AMQP_URI"], name)


def declare_dead_letter_queue(amqp_uri, queue_name):
    exchange = Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True)
    queue = Queue(dead_letter_queue_name(queue_name), exchange=exchange,
                  routing_key=queue_name, durable=True)
    with Connection(amqp_uri) as conn:
        queue.bind(conn.default_channel).declare()


reliable_handler = ReliableEventHandler.decorator


def event_exchange(service, config):
    return get_event_exchange(service, config)
