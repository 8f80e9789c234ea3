"""Writes of concurrent workers gathered into one flush (group commit).

The first worker to submit flushes everything pending, the others wait for it and
meanwhile more gather; under load a flush carries as many items as workers run at once
(the prefetch), alone it carries one with no added wait. A worker returns only once its
writes are stored, so its message is acked after them (at-least-once kept).
`flush(items)` -> one result per item; an exception fails every item of its flush."""
import threading

from nameko.extensions import DependencyProvider


class GroupCommit:
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


class GroupCommitIntake(DependencyProvider):
    """A container's group commit as a nameko dependency: `submit(item, flush)` from any
    worker; the first `flush` given is kept (every worker gives one that does the same,
    e.g. a method of the shared store's domain object). Contacts' gathered timeline entries
    use it."""

    def setup(self):
        self.commit = None
        self.lock = threading.Lock()

    def get_dependency(self, worker_ctx):
        return self

    def submit(self, item, flush):
        if self.commit is None:
            with self.lock:
                if self.commit is None:
                    self.commit = GroupCommit(flush)
        return self.commit.submit(item)
