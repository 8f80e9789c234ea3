"""The automation service's nameko dependencies beyond the common ones (store, caller,
outbox): calls to other services made in a rule's name; and of each event of a batch
(crm_common.messaging.batches) its place in the cause chain. Its source queues are bound
to what the rules name with crm_common/messaging/bindings.py."""
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


def depth_of(context):
    """How deep in an automation cause chain an event is, from the context its message
    carried (0: a person or an outside system caused it)."""
    try:
        return max(int((context or {}).get(DEPTH_KEY) or 0), 0)
    except (TypeError, ValueError):
        return 0
