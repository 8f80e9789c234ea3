"""The tasks service's nameko dependencies beyond the common ones (store, caller, outbox)."""
import eventlet
from nameko.extensions import DependencyProvider


class ScanPool(DependencyProvider):
    """The timer's `map`: the tasks of a scan batch handled `size` at once (each one's
    publish waits for the broker's confirm), a fresh pool per tick."""

    def __init__(self, size):
        self.size = size

    def get_dependency(self, worker_ctx):
        return eventlet.GreenPool(self.size).imap
