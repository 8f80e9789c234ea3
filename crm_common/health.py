"""What every service has for health and operations:
- RPC `list_dead_letters` / `replay_dead_letters` for its event handlers' dead letters;
- `_announce(write, *args)`: a write and its events stored in one transaction, then
  published (crm_common.messaging.outbox); `_announce_after_reply` publishes after the
  answer; `_handle_and_announce(handler, event)` the same for an event handler's writes;
- RPC `ping` (the process answers) and `health` (its database answers too); the gateway's
  /readyz calls `health` on each service;
- a heartbeat timer that writes a small file every few seconds, so a container's own probe
  (`python -m crm_common.healthcheck`, used by Docker HEALTHCHECK and the k8s probes)
  knows this very process is alive (event loop turning) and ready (database answering).
"""
import json
import os
import tempfile
import time

import eventlet
from nameko.timer import timer

from crm_common.config import get_settings
from crm_common.messaging.events import DeadLetters
from crm_common.observability import LogContext, ServiceMetrics
from crm_common.messaging.rpc import rpc

HEARTBEAT_SECONDS = 5


def heartbeat_path(service, settings=None):
    return (settings or get_settings()).heartbeat_file or os.path.join(
        tempfile.gettempdir(), f"crm-{service}.heartbeat")


class HealthEntrypoints:
    dead_letters = DeadLetters()
    metrics = ServiceMetrics()
    log_context = LogContext()

    @rpc
    def ping(self, delay=0):
        """`delay` (at most 10 s) holds the answer: a probe of shutdown draining and timeouts."""
        if delay:
            eventlet.sleep(min(float(delay), 10.0))
        return {"service": self.name, "ok": True, "pid": os.getpid()}

    @rpc
    def health(self):
        self.store.ping()
        return {"service": self.name, "ok": True, "database": self.store.db.name}

    def _announce(self, write, *args, **kwargs):
        """`write(*args, **kwargs)` -> (result, events), run in one transaction with its
        events stored in the outbox, published once it committed; returns the result."""
        return self.dispatch.atomic(write, *args, **kwargs)

    def _announce_after_reply(self, write, *args, **kwargs):
        """The same for an answer someone waits on (a PBX): published after the answer."""
        return self.dispatch.after_reply(write, *args, **kwargs)

    def _handle_and_announce(self, handler, event):
        """An event handler's writes and the events it announces (`handler(event)` -> events),
        in one transaction."""
        self._announce(lambda: (None, handler(event)))

    @rpc
    def list_dead_letters(self):
        """Each reliable handler's queue with its dead letters (count, a few with their error)."""
        return self.dead_letters.summary()

    @rpc
    def replay_dead_letters(self, queue=None):
        return self.dead_letters.replay(queue)

    def _ready(self):
        """Whether this process can do its work: its database answers (the heartbeat
        records it for the container's readiness probe)."""
        return self.store.ping()

    @timer(interval=HEARTBEAT_SECONDS, eager=True)
    def heartbeat(self):
        try:
            database_ok = bool(self._ready())
        except Exception:  # noqa: BLE001 - any failure means: not ready
            database_ok = False
        path = heartbeat_path(self.name)
        scratch = f"{path}.{os.getpid()}"
        with open(scratch, "w") as handle:
            json.dump({"at": time.time(), "pid": os.getpid(), "database": database_ok}, handle)
        os.replace(scratch, path)  # atomic: a probe never reads half a file
