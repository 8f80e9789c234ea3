"""The telephony service's nameko dependencies beyond the common ones (store, caller,
outbox, RPC)."""
import logging

from nameko.extensions import DependencyProvider

from crm_common.context import Caller
from services.telephony.calls import CallLog, Calls

log = logging.getLogger(__name__)


class Background(DependencyProvider):
    """Work that outlives the RPC call (awaiting a PBX's OriginateResponse), run as a
    container-managed greenlet so it is stopped with the service."""

    def get_dependency(self, worker_ctx):
        return self

    def spawn(self, func, *args):
        self.container.spawn_managed_thread(lambda: func(*args))

    def follow_origination(self, adapter, session, job, store, settings):
        self.spawn(_follow, adapter, session, job, store, settings)


def _follow(adapter, session, job, store, settings):
    """After the RPC answered: the PBX's final word on the origination, on the record.
    There is no caller here: it runs as the service itself."""
    try:
        result = adapter.follow(settings, session, job)
        CallLog(Calls(store, Caller(), settings, None, None)).originate_result(job["call_id"], result)
    except Exception:  # noqa: BLE001 - a background task must log, never die silently
        log.exception("following origination %s failed", job["call_id"])
