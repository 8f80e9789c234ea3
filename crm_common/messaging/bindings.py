"""Source queues bound on demand: a service that needs some of a source's event types
always and the others only once something it stores names them (a webhook subscribing to
a type, a rule) declares its queue with the first and binds the others when they are
named. An event nobody asked for is then not routed to the queue at all: no delivery,
decode, ack or lookup per event (a call's `call_started` cost notifications ~1 ms of
CPU and RabbitMQ about as much for a webhook lookup that found none).

Bindings are never removed while running (a subscription deleted leaves its type bound,
as a queue declared before the change had it): one bind serves every replica (they share
the queue) and the broker keeps it with the durable queue. Used by notifications (its
webhooks) and automation (its rules)."""
import logging

from kombu import Connection, binding
from nameko.extensions import DependencyProvider

from crm_common.messaging.events import SourceEventHandler
from crm_common.mongo import MongoStore

log = logging.getLogger(__name__)


class DemandBoundHandler(SourceEventHandler):
    """A source's queue bound at start to `always` only; the other `event_types` are bound
    by DemandBindings.ensure when named."""

    def __init__(self, source_service, event_types, always, **kwargs):
        super().__init__(source_service, event_types, **kwargs)
        self.always = frozenset(always)

    def setup(self):
        super().setup()
        self.queue.bindings = {binding(self.queue.exchange, routing_key=event_type)
                               for event_type in self.event_types if event_type in self.always}


demand_bound_handler = DemandBoundHandler.decorator


class DemandBindings(DependencyProvider):
    """Binds the DemandBoundHandler queues to the event types named (`source.type` keys):
    those `named(store)` returns (the service's store), at start and whenever the service
    calls refresh() (after a write that may name new types, before its answer, so an event
    published after the answer reaches the queue)."""

    def __init__(self, named):
        self.named = named

    def setup(self):
        self.bound = set()   # `source.type` this process has bound (binding is idempotent)

    def start(self):
        stores = [d.store for d in self.container.dependencies if isinstance(d, MongoStore)]
        if stores:
            self.refresh(stores[0])

    def get_dependency(self, worker_ctx):
        return self

    def refresh(self, store):
        """Binds what `named(store)` names now."""
        self.ensure(self.named(store))

    def ensure(self, type_keys):
        """Binds the queues to these event types (`source.type`) where not bound yet."""
        handlers = {h.source_service: h for h in self.container.entrypoints
                    if isinstance(h, DemandBoundHandler)}
        wanted = {}
        for key in type_keys or ():
            source, _, kind = str(key).partition(".")
            handler = handlers.get(source)
            if (handler is not None and kind in handler.event_types and kind not in handler.always
                    and key not in self.bound):
                wanted.setdefault(handler, []).append((kind, key))
        if not wanted:
            return
        with Connection(self.container.config["AMQP_URI"]) as conn:
            channel = conn.channel()
            for handler, kinds in wanted.items():
                queue = handler.queue.bind(channel)
                queue.declare()   # the queue and exchange exist before the binding
                for kind, key in kinds:
                    queue.bind_to(handler.queue.exchange, routing_key=kind)
                    self.bound.add(key)
                    log.info("queue %s bound to %s (named now)", queue.name, kind)
