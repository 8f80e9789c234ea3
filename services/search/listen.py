"""Every replica of the search service holds a full index, so every replica gets every
event: one durable queue per replica and source service
(`evt-<source>-events--search.<method>-<replica id>`), bound to the event types that change
a searchable record. It keeps what `crm_common.messaging.events.reliable_handler` gives
(counted retries, then dead-lettering) and, being durable and named after the replica
(its id is kept in the replica's index folder), it keeps the events of a replica that is
down until it is back.

A queue unused for `CRM_SEARCH_QUEUE_EXPIRES_HOURS` is deleted by the broker (a replica
gone for good leaves nothing behind); a replica that finds its queue gone, or declared
with other arguments, has missed events and rebuilds its index (dependencies.py)."""
from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Connection, binding
from nameko.events import BROADCAST

from crm_common.config import get_settings
from crm_common.messaging.events import ReliableEventHandler
from services.search.dependencies import SearchIndex
from services.search.index import replica_id


class FeedHandler(ReliableEventHandler):
    def __init__(self, source_service, event_types, **kwargs):
        super().__init__(source_service, "events", handler_type=BROADCAST,
                         reliable_delivery=True, **kwargs)
        self.event_types = tuple(sorted(event_types))

    @property
    def broadcast_identifier(self):
        return replica_id(get_settings().search.index_dir)

    def setup(self):
        super().setup()
        hours = get_settings().search.queue_expires_hours
        self.queue.bindings = {binding(self.queue.exchange, routing_key=event_type)
                               for event_type in self.event_types}
        self.queue.queue_arguments["x-expires"] = max(int(hours * 3600 * 1000), 60_000)
        # declared now, before any rebuild reads the owners: an event of a write the
        # rebuild does not see is kept for this replica
        if not self._declare():
            for provider in self.container.dependencies:
                if isinstance(provider, SearchIndex):
                    provider.queue_lost(self.queue.name)

    def _declare(self):
        """Declares the queue; False if it was not there (or not as it is now)."""
        with Connection(self.container.config["AMQP_URI"]) as conn:
            existed = True
            try:
                conn.channel().queue_declare(self.queue.name, passive=True)
            except NotFound:
                existed = False
            try:
                self.queue.bind(conn.channel()).declare()
            except PreconditionFailed:
                # declared with other arguments (another expiry): made again, empty
                conn.channel().queue_delete(self.queue.name)
                self.queue.bind(conn.channel()).declare()
                existed = False
        return existed


feed_handler = FeedHandler.decorator
