"""The automation service's nameko dependencies beyond the common ones (store, caller,
outbox): calls to other services made in a rule's name and the cause chain of the event
being handled. Its source queues are bound to what the rules name with
crm_common/messaging/bindings.py."""
import threading

from nameko.extensions import DependencyProvider

from crm_common.messaging.rpc import ServiceRpc

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
