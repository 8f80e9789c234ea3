"""One reliable queue per source service instead of one per event type: this service listens
to some 25 event types, and a quorum queue per type costs the broker a Raft group each.
The queue is bound to each wanted type on `<source>.events`; it keeps everything
`crm_common.events.reliable_handler` gives (quorum queue, delivery limit, dead-lettering)."""
from kombu import binding

from crm_common.events import ReliableEventHandler


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
