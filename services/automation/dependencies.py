"""The automation service's nameko dependencies beyond the common ones (store, caller,
outbox): calls to other services made in a rule's name and the cause chain of the event
being handled. Its source queues are bound to what the rules name with
crm_common/messaging/bindings.py."""
from nameko.extensions import DependencyProvider

from crm_common.group_commit import GroupCommit
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
