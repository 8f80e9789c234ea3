"""The notes service's nameko dependencies beyond the common ones (store, caller, outbox)."""
from nameko.extensions import DependencyProvider

from crm_common.config import load_settings
from crm_common.messaging.rpc import RpcPool

# the owner of each kind of record and its RPC that answers it within the caller's visibility
OWNERS = {"contact": ("contacts", "get_contact"), "company": ("contacts", "get_company"),
          "deal": ("deals", "get_deal"), "task": ("tasks", "get_task")}


class Records:
    def __init__(self, pool, context):
        self.pool = pool
        self.context = context

    def get(self, record_type, record_id, context=None):
        """The record as its owning service answers it to the caller (or to `context`, a
        caller context of someone else): NotFound when it does not exist or is not visible."""
        service, method = OWNERS[record_type]
        return self.pool.call(service, method, record_id,
                              context=self.context if context is None else context)


class RecordRpc(DependencyProvider):
    """Asks the services that own notes' records (contacts, deals, tasks) about them: "a
    note is visible to whoever sees its record", as the caller or as a mentioned user."""

    def setup(self):
        settings = load_settings()
        self.pool = RpcPool(self.container.config["AMQP_URI"], size=16,
                            timeout=settings.rpc_timeout, name=self.container.service_name)

    def stop(self):
        self.pool.close()

    def get_dependency(self, worker_ctx):
        context = {k: v for k, v in worker_ctx.context_data.items()
                   if v is not None and isinstance(v, (str, int, float, bool, list))}
        return Records(self.pool, context)
