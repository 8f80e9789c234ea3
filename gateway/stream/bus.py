"""Events from RabbitMQ into the hub: one queue per stream process, bound to every source's
event exchange (`<source>.events`, topic, `#`), consumed without acks (a live feed: what a
stream missed while this process was away is a `resync`, never a replay from the broker).

The queue outlives a short broker disconnection (x-expires, not exclusive), so a reconnect
loses nothing; a process that is gone leaves it to expire."""
import json
import logging
import socket
import uuid

import eventlet
from kombu import Connection, Consumer, Exchange, Queue

from gateway.stream.visibility import SOURCES, Owners, classify

log = logging.getLogger("gateway.stream.bus")
QUEUE_EXPIRES_MS = 60000


def queue_name():
    return f"stream.{socket.gethostname()}.{uuid.uuid4().hex[:8]}"


class Bus:
    def __init__(self, amqp_uri, hub, sources=SOURCES):
        self.amqp_uri = amqp_uri
        self.hub = hub
        self.owners = Owners()
        self.queue = Queue(queue_name(), durable=False, auto_delete=False,
                           queue_arguments={"x-expires": QUEUE_EXPIRES_MS},
                           bindings=[])
        self.exchanges = [Exchange(f"{s}.events", type="topic", durable=True) for s in sources]
        self.connected = False
        self.received = 0

    def start(self):
        return eventlet.spawn(self.run_forever)

    def run_forever(self):
        while True:
            try:
                with Connection(self.amqp_uri, heartbeat=30, connect_timeout=5) as connection:
                    self._consume(connection)
            except Exception:  # noqa: BLE001 - broker away: streams stay open, we retry
                if self.connected:
                    log.warning("lost the broker; reconnecting", exc_info=True)
                self.connected = False
                eventlet.sleep(1)

    def _consume(self, connection):
        channel = connection.channel()
        for exchange in self.exchanges:
            exchange(channel).declare()
        bound = self.queue(channel)
        bound.declare()
        for exchange in self.exchanges:
            bound.bind_to(exchange=exchange.name, routing_key="#")
        with Consumer(channel, queues=[bound], callbacks=[self.on_message], no_ack=True,
                      accept=["json"]):
            self.connected = True
            log.info("consuming %s", self.queue.name)
            while True:
                try:
                    connection.drain_events(timeout=10)
                except socket.timeout:
                    connection.heartbeat_check()

    def on_message(self, body, message):
        self.received += 1
        try:
            envelope = body if isinstance(body, dict) else json.loads(body)
            self.deliver(envelope)
        except Exception:  # noqa: BLE001 - one odd message never stops the feed
            log.exception("could not route an event to the streams")

    def deliver(self, envelope):
        for name, audience in classify(envelope, self.owners):
            self.hub.publish(name, envelope, audience, event_id=envelope.get("event_id"))
