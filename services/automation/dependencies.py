"""The automation service's nameko dependencies beyond the common ones (store, caller,
outbox): calls to other services made in a rule's name, the cause chain of the event
being handled, and the event queues bound to what the rules name."""
import logging
import threading

from kombu import Connection, binding
from nameko.extensions import DependencyProvider

from crm_common.messaging.events import SourceEventHandler
from crm_common.messaging.rpc import ServiceRpc
from crm_common.mongo import MongoStore

log = logging.getLogger(__name__)

# context key carried by our RPC calls, the writes they cause and the events those writes
# announce (the outbox copies the worker's context into the event's headers): how many
# automation steps led to an event
DEPTH_KEY = "automation_depth"


class CauseRpc(ServiceRpc):
    """ServiceRpc whose calls carry the context we give (the automation acting on its own,
    one step deeper in the cause chain), not the context of the event being handled."""

    def get_dependency(self, worker_ctx):
        return lambda context, timeout=None: self.pool.proxy(self.service, context, timeout)


class CauseDepth(DependencyProvider):
    """How deep in an automation cause chain the current event is (0: a person or an
    outside system caused it)."""

    def get_dependency(self, worker_ctx):
        try:
            return max(int(worker_ctx.context_data.get(DEPTH_KEY) or 0), 0)
        except (TypeError, ValueError):
            return 0


class GroupCommit:
    """Writes of concurrent workers gathered into one flush (group commit): the first
    worker to submit flushes everything pending, the others wait for it and meanwhile more
    gather; under load a flush carries as many events as workers run at once (prefetch),
    alone it carries one with no added wait. A worker returns only once its writes are
    stored, so its message is acked after them. `flush(items)` -> one result per item."""

    def __init__(self, flush):
        self.flush = flush
        self.lock = threading.Lock()
        self.pending = []
        self.flushing = False

    def submit(self, item):
        done = threading.Event()
        slot = {"done": done}
        with self.lock:
            self.pending.append((item, slot))
            lead = not self.flushing
            self.flushing = True
        if not lead:
            done.wait()
        else:
            self._flush_all()
        if "error" in slot:
            raise slot["error"]
        return slot.get("result")

    def _flush_all(self):
        while True:
            with self.lock:
                batch, self.pending = self.pending, []
                if not batch:
                    self.flushing = False
                    return
            try:
                results = self.flush([item for item, _ in batch])
                for (_, slot), result in zip(batch, results):
                    slot["result"] = result
            except Exception as exc:  # noqa: BLE001 - every waiter of the batch fails with it
                for _, slot in batch:
                    slot["error"] = exc
            for _, slot in batch:
                slot["done"].set()


class EventIntake(DependencyProvider):
    """This container's group commit of what events leave behind (see
    operations.Automation.flush_intake)."""

    def setup(self):
        self.commit = None

    def get_dependency(self, worker_ctx):
        return self

    def bind_flush(self, flush):
        if self.commit is None:
            self.commit = GroupCommit(flush)
        return self.commit


class RuleBoundHandler(SourceEventHandler):
    """A source's queue bound to the event types automation always needs (`always`: every
    type of a source whose events are kept for dry runs, and those that leave a record copy
    or a touch behind), and to its other types only once a rule names one (EventBindings).
    A call, message or note event no rule names then costs nothing here: not routed to
    this queue at all (each one delivered, decoded and acked cost ~2 ms of CPU, and the
    rules version read a database query). Bindings are never removed while running: a
    rule deleted leaves its type bound (as a queue declared before this rule had them)."""

    def __init__(self, source_service, event_types, always, **kwargs):
        super().__init__(source_service, event_types, **kwargs)
        self.always = frozenset(always)

    def setup(self):
        super().setup()
        self.queue.bindings = {binding(self.queue.exchange, routing_key=event_type)
                               for event_type in self.event_types if event_type in self.always}


rule_bound_handler = RuleBoundHandler.decorator


class EventBindings(DependencyProvider):
    """Binds the RuleBoundHandler queues to the event types rules name (`source.type`):
    at start (the rules stored already) and after every rule write, before its answer, so
    an event published after a rule was saved reaches the rule. One bind serves every
    replica (they share the queue); the broker keeps it with the durable queue."""

    def setup(self):
        self.bound = set()   # `source.type` this process has bound (binding is idempotent)

    def start(self):
        stores = [d.store for d in self.container.dependencies if isinstance(d, MongoStore)]
        if stores:
            self.ensure(stores[0].rule_event_types())

    def get_dependency(self, worker_ctx):
        return self

    def ensure(self, type_keys):
        """Binds the queues to these event types (`source.type`) where not bound yet."""
        handlers = {h.source_service: h for h in self.container.entrypoints
                    if isinstance(h, RuleBoundHandler)}
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
                    log.info("automation queue %s bound to %s (a rule names it)", queue.name, kind)
