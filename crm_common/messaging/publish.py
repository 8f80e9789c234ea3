"""Publish a nameko-compatible event directly, with no outbox: tests, benches and scripts
inject events with it (the services and the gateway publish through
crm_common.messaging.outbox). Same exchange (`<source>.events`, topic, durable), routing
key = type, the body dumped through the event's contract (contracts/events.py)."""
from kombu import Connection, Exchange, Producer

from contracts.events import dump_event
from crm_common.messaging.events import envelope


def publish_event(amqp_uri, source, event_type, data, event_id=None, context=None,
                  connection=None):
    body = dump_event(source, event_type, envelope(source, event_type, data, event_id))
    exchange = Exchange(f"{source}.events", type="topic", durable=True)
    headers = {f"nameko.{k}": v for k, v in (context or {}).items() if v is not None}
    own = connection is None
    conn = connection or Connection(amqp_uri)
    try:
        producer = Producer(conn.default_channel, exchange=exchange, serializer="json")
        producer.publish(body, routing_key=event_type, headers=headers, declare=[exchange],
                         retry=True, delivery_mode=2)
    finally:
        if own:
            conn.release()
    return body
