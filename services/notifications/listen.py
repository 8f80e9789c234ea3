"""One reliable queue per source service instead of one per event type: this service listens
to some 25 event types, and a durable queue (and dead-letter queue) per type is broker load
for nothing. The queue is bound to each wanted type on `<source>.events`; it keeps what
`crm_common.messaging.events.reliable_handler` gives (counted retries, then dead-lettering; failed
messages go back to the queue by its name, so the bindings do not matter for them)."""
from kombu import binding

from crm_common.messaging.events import ReliableEventHandler


class SourceEventHandler(ReliableEventHandler):
    def __init__(self, source_service, event_types, **kwargs):
        # the name part of the queue ("evt-<source>-events--notifications.<method>")
        super().__init__(source_service, "events", **kwargs)
        self.event_types = tuple(sorted(event_types))

    def setup(self):
        super().setup()
        self.queue.bindings = {binding(self.queue.exchange, routing_key=event_type)
                               for event_type in self.event_types}


source_handler = SourceEventHandler.decorator
